"""``fairprune benchmark``: sweep methods × pruning rates × seeds on one dataset and model."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from ._types import (
    add_threads_argument,
    command_error,
    float_in,
    int_at_least,
    load_data_or_exit,
    n_jobs,
    nonnegative_float,
    output_folder,
    positive_float,
    pruning_rate,
    torch_device,
)


def _error(message: str) -> NoReturn:
    """``fairprune benchmark: error: <message>`` on stderr, exit status 2."""
    command_error("benchmark", message)


def _check_combinations(args: argparse.Namespace) -> None:
    """The checks that involve several flags, before any data loads (one line, exit 2)."""
    from ..benchmark.data import DEFAULT_MODELS

    if args.model is None:
        args.model = DEFAULT_MODELS[args.dataset]
    if args.target is not None and args.dataset != "utkface":
        _error("--target applies to --dataset utkface only")
    if (args.minority_classes is not None or args.minority_fraction is not None) and \
            args.dataset != "fashion_mnist":
        _error("--minority-classes / --minority-fraction apply to --dataset fashion_mnist "
               "only")
    if args.dataset == "adult" and args.model != "mlp":
        _error(f"--dataset adult is tabular: use --model mlp (got {args.model})")
    if args.dataset == "utkface" and args.data_path is None:
        _error("--dataset utkface needs --data-path DIR, your folder of UTKFace images")
    allowed = {"adult": {"race", "sex"}, "utkface": {"race", "gender", "age_bin"}}
    if args.dataset in allowed and not set(args.sensitive) <= allowed[args.dataset]:
        _error(f"--sensitive for --dataset {args.dataset} must be among "
               f"{' '.join(sorted(allowed[args.dataset]))}; got {' '.join(args.sensitive)}")


def run_benchmark(args: argparse.Namespace) -> pd.DataFrame:
    """Sweep methods × pruning rates × seeds on one dataset and model; write table and figures.

    The results (``results.csv``, ``summary.csv``, ``meta.json``) are written before the
    figures are drawn, so a plotting failure loses no result. If some runs raise, the finished
    ones are written and summarised, then one line on stderr names the failed runs (method,
    rate, seed, error; their tracebacks are in ``meta.json``) and the exit status is 1.
    """
    import torch

    from ..benchmark.configs import net_params_for
    from ..benchmark.report import print_summary
    from ..benchmark.runner import RunsFailed
    from ..benchmark.sweep import run_sweep

    _check_combinations(args)
    start = time.perf_counter()
    # The policy of every subcommand (_types.DEFAULT_THREADS): one torch thread per run
    # unless asked; the rows then do not depend on --n-jobs either (float reductions differ
    # between thread counts).
    threads = args.threads
    torch.set_num_threads(threads)
    data = load_data_or_exit(
        "benchmark", args.dataset, model=args.model, sensitive=args.sensitive,
        n_train=args.n_train, minority_classes=args.minority_classes,
        minority_fraction=args.minority_fraction, data_path=args.data_path,
        random_state=args.data_seed, target=args.target, image_size=args.image_size,
    )
    print(data.describe())
    for note in data.notes:
        print(note)
    params = net_params_for(
        args.model, dataset=args.dataset, max_epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs, lr=args.lr, batch_size=args.batch_size,
        momentum=args.momentum, pruning_method=args.pruning_method, hidden_units=args.hidden,
        channels=args.channels, width=args.width, dual_lr=args.dual_lr,
        dual_update=args.dual_update, constraint_target=args.constraint_target,
        tolerance=args.tolerance,
        device=args.device,
    )
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    n_runs = len(args.methods) * len(args.rates) * len(seeds)
    print(f"{n_runs} runs: methods {' '.join(args.methods)} x rates "
          f"{' '.join(f'{r:g}' for r in args.rates)} x seeds {seeds} "
          f"({args.model}, {params['max_epochs']} epochs + {params['fine_tune_epochs']} "
          f"fine-tuning, {args.pruning_method}); n_jobs={args.n_jobs}, torch threads per run "
          f"{threads}")
    eg_params = {} if args.eg_max_iter is None else {"max_iter": args.eg_max_iter}
    gridsearch_params = {} if args.grid_size is None else {"grid_size": args.grid_size}
    failed = None
    try:
        result = run_sweep(
            data, model=args.model, methods=args.methods, rates=args.rates, seeds=seeds,
            net_params=params, n_jobs=args.n_jobs, threads=threads, out=args.out,
            figures=False, eg_constraint=args.eg_constraint,
            threshold_constraint=args.threshold_constraint, eg_params=eg_params,
            gridsearch_params=gridsearch_params,
            config={"command": "fairprune benchmark", "argv": sys.argv[1:]},
        )
    except RunsFailed as error:
        if error.sweep is None:  # no run finished: nothing was written
            _failed(error)
        failed, result = error, error.sweep
    print("\nmean [95 % t-interval] over seeds. fairness_violation = xi = max_a R(a) - min_a R(a) "
          "(eq. 3); max_excess_accuracy_gap = max_g psi_g, the most accuracy a group lost beyond "
          "the overall loss; both against the common dense net")
    print_summary(result.summary)  # to_string: every row and column, never truncated
    print("\nwrote " + ", ".join(str(f) for f in result.files))
    if failed is not None:
        _failed(failed)
    if not args.no_figures:
        from ..benchmark.figures import plot_sweep

        try:  # the results are already on disk
            figures = plot_sweep(result.table, args.out,
                                 title=f"{data.name}, {args.model}, groups by {data.sensitive}")
            print("wrote " + ", ".join(str(f) for f in figures))
        except Exception as exc:
            print(f"could not draw the figures ({type(exc).__name__}: {exc}); the results are "
                  "written", file=sys.stderr)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return result.table


def _failed(error: Exception) -> NoReturn:
    """One line on stderr naming the failed runs; exit status 1 (the runs, not the usage)."""
    print(f"fairprune benchmark: error: {error} (tracebacks: failed_runs in meta.json)"
          if getattr(error, "files", None) else f"fairprune benchmark: error: {error}",
          file=sys.stderr)
    raise SystemExit(1)


def _auto_or(parse):
    """``"auto"`` (FairConstrainedNet resolves it per constraint target) or ``parse(value)``."""

    def parse_or_auto(value: str):
        return value if value == "auto" else parse(value)

    parse_or_auto.__name__ = getattr(parse, "__name__", "value")
    return parse_or_auto


def _dual_update(value: str) -> str | int:
    if value in ("epoch", "auto"):
        return value
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(
            f"--dual-update must be 'auto', 'epoch' or an int >= 1; got {value}")
    return k


def _class_name(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def add_benchmark_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``benchmark`` sub-parser; every value is checked at parse time."""
    from ..benchmark.configs import MODELS
    from ..benchmark.data import DATASETS
    from ..benchmark.methods import METHODS
    from ..pruning import PRUNING_METHODS

    bench = commands.add_parser(
        "benchmark",
        help="sweep methods x pruning rates x seeds on one dataset and model; write results.csv "
             "and figures",
        description="Train, prune and mitigate on one dataset and model for every method x "
                    "pruning rate x seed; print one line per run and a final table; write "
                    "results.csv (one row per run x group), summary.csv, meta.json and PNG "
                    "figures to --out. Without arguments: Adult, MLP, rates 0 0.5 0.9, methods "
                    "none fair_after, 1 seed. UTKFace (the paper's setting, your own copy of "
                    "the images): --dataset utkface --data-path DIR (ResNet18, 32x32, "
                    "ethnicity as label and group).",
    )
    bench.add_argument("--dataset", default="adult", choices=DATASETS)
    bench.add_argument("--model", default=None, choices=MODELS,
                       help="mlp, cnn (SmallCNN) or resnet18 (ResNet18, see --width); default "
                            "resnet18 for utkface, mlp otherwise")
    bench.add_argument("--sensitive", nargs="+", default=["race"],
                       choices=["race", "sex", "gender", "age_bin"],
                       help="groups: Adult's race / sex, UTKFace's race / gender / age_bin; "
                            "several give intersectional groups (default: race)")
    bench.add_argument("--target", default=None, choices=["race", "gender", "age_bin"],
                       help="utkface: the label (default race: ethnicity as both label and "
                            "group, the paper's Fig. 1 and 5)")
    bench.add_argument("--image-size", type=int_at_least(8), default=32,
                       help="utkface: images are resized to this size (default 32)")
    bench.add_argument("--rates", nargs="+", type=pruning_rate, default=[0.0, 0.5, 0.9],
                       help="pruning rates (default: 0 0.5 0.9)")
    bench.add_argument("--methods", nargs="+", default=["none", "ceag"], choices=METHODS,
                       help="default: none ceag (ceag: FairConstrainedNet with "
                            "constraint_target=accuracy_gap at its defaults, the recommended "
                            "mitigation; fair_before/fair_after/fair_both: the paper's)")
    bench.add_argument("--seeds", type=int_at_least(1), default=1,
                       help="number of seeds (default 1)")
    bench.add_argument("--seed-start", type=int_at_least(0), default=0,
                       help="first seed (default 0)")
    bench.add_argument("--out", type=output_folder, default=Path("results"),
                       help="output folder, made if missing; must be writable (default: "
                            "results/)")
    bench.add_argument("--pruning-method", default="global_magnitude", choices=PRUNING_METHODS)
    bench.add_argument("--epochs", type=int_at_least(1), default=None,
                       help="dense training epochs (default: adult 10, fashion_mnist 8, digits 20, "
                            "utkface 10)")
    bench.add_argument("--fine-tune-epochs", type=int_at_least(0), default=2,
                       help="epochs after pruning, masks held (default 2)")
    bench.add_argument("--lr", type=positive_float, default=None,
                       help="SGD learning rate (default: adult 0.05, fashion_mnist 0.01, "
                            "digits 0.1)")
    bench.add_argument("--momentum", type=float_in(0.0, 1.0, closed="left", name="a momentum"),
                       default=0.9, help="SGD momentum in [0, 1) (default 0.9)")
    bench.add_argument("--batch-size", type=int_at_least(1), default=None,
                       help="default: adult 256, fashion_mnist 128, digits 64")
    bench.add_argument("--hidden", nargs="+", type=int_at_least(1), default=[64, 64],
                       help="MLP hidden layer sizes (default 64 64)")
    bench.add_argument("--channels", nargs="+", type=int_at_least(1), default=[16, 32],
                       help="SmallCNN channels (default 16 32)")
    bench.add_argument("--width", type=int_at_least(1), default=16,
                       help="ResNet18 width (default 16; 64 is the standard ResNet-18)")
    bench.add_argument("--dual-lr", type=_auto_or(nonnegative_float), default="auto",
                       help="dual step size of the fair_* and ceag methods (default auto: 0.05 "
                            "for group_loss / excess_risk, 1.0 for accuracy_gap)")
    bench.add_argument("--dual-update", type=_dual_update, default="auto",
                       help="'epoch' or every k training batches (default auto: epoch for "
                            "group_loss / excess_risk, 20 batches for accuracy_gap)")
    bench.add_argument("--tolerance", type=_auto_or(nonnegative_float), default="auto",
                       help="constraint tolerance epsilon of the fair_* and ceag methods "
                            "(default auto: 0)")
    bench.add_argument("--constraint-target", default="group_loss",
                       choices=["group_loss", "excess_risk", "accuracy_gap"],
                       help="what the fair_* methods constrain: equal group losses (default, "
                            "the paper's), equal excess risks R(a), or psi_g <= tolerance "
                            "(accuracy_gap, CEAG); ceag always uses accuracy_gap")
    bench.add_argument("--eg-constraint", default="error_rate_parity",
                       choices=["error_rate_parity", "bounded_group_loss"],
                       help="fairlearn moment of eg and gridsearch")
    bench.add_argument("--eg-max-iter", type=int_at_least(1), default=None,
                       help="ExponentiatedGradient max_iter (fairlearn's default: 50 nets)")
    bench.add_argument("--grid-size", type=int_at_least(1), default=None,
                       help="GridSearch grid_size (fairlearn's default: 10 nets)")
    bench.add_argument("--threshold-constraint", default="demographic_parity",
                       choices=["demographic_parity", "equalized_odds"])
    bench.add_argument("--n-train", type=int_at_least(2), default=None,
                       help="subsample the training set to this many rows (said in the output)")
    bench.add_argument("--minority-classes", nargs="+", type=_class_name, default=None,
                       help="fashion_mnist: classes made rare in training (indices or names)")
    bench.add_argument("--minority-fraction",
                       type=float_in(0.0, 1.0, closed="right", name="a fraction"), default=None,
                       help="fashion_mnist: fraction of the minority classes' images kept")
    bench.add_argument("--data-path", type=Path, default=None,
                       help="fashion_mnist: folder of the IDX files (default: the Debian "
                            "package's folder); utkface (required): folder of the images named "
                            "[age]_[gender]_[race]_[date&time].jpg")
    bench.add_argument("--data-seed", type=int_at_least(0), default=0,
                       help="seed of subsampling/splits")
    bench.add_argument("--n-jobs", type=n_jobs, default=1,
                       help="parallel runs through joblib (-1: all cores; default 1)")
    add_threads_argument(bench, " per run")
    bench.add_argument("--device", type=torch_device, default="cpu",
                       help="skorch device, e.g. cuda (default cpu); checked to exist here")
    bench.add_argument("--no-figures", action="store_true", help="write no PNG figures")
    bench.set_defaults(handler=run_benchmark)
    return bench
