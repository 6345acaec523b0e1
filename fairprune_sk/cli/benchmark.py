"""``fairprune benchmark``: sweep methods × pruning rates × seeds on one dataset and model."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import NoReturn

import pandas as pd

from ._data_options import add_data_options, add_net_options, describe_net, load_data
from ._types import (
    Distinct,
    add_compression_options,
    add_threads_argument,
    command_error,
    compression_levels,
    int_at_least,
    n_jobs,
    nonnegative_float,
    output_folder,
    pruning_rate,
    torch_device,
    torch_threads,
)


def run_benchmark(args: argparse.Namespace) -> pd.DataFrame:
    """Sweep methods × pruning rates × seeds on one dataset and model; write table and figures.

    The results (``results.csv``, ``summary.csv``, ``meta.json``) are written before the
    figures are drawn, so a plotting failure loses no result. If some runs raise, the finished
    ones are written and summarised, then one line on stderr names the failed runs (method,
    rate, seed, error; their tracebacks are in ``meta.json``) and the exit status is 1.
    """
    from ..benchmark.methods import check_compression, check_methods
    from ..benchmark.report import print_summary
    from ..benchmark.runner import RunsFailed
    from ..benchmark.sweep import run_sweep, sweep_net_params

    rates = compression_levels("benchmark", args, DEFAULT_RATES)
    try:
        check_compression(args.compress, args.methods, rates)
    except ValueError as error:
        command_error("benchmark", f"--methods: {error}")
    start = time.perf_counter()
    # one torch thread per run unless asked (_types.DEFAULT_THREADS): the rows then do not
    # depend on --n-jobs either (float reductions differ between thread counts)
    threads = args.threads
    with torch_threads(threads):
        data = load_data("benchmark", args, data_seed=0 if args.data_seed is None
                         else args.data_seed)
        try:
            check_methods(args.methods, data.y_train, args.pruning_method)
        except ValueError as error:
            command_error("benchmark", f"--methods: {error}")
        print(data.describe())
        for note in data.notes:
            print(note)
        params = sweep_net_params(
            data, args.model, max_epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
            lr=args.lr, batch_size=args.batch_size, momentum=args.momentum,
            pruning_method=args.pruning_method, hidden_units=args.hidden,
            channels=args.channels, width=args.width, device=args.device,
            dual_lr=args.dual_lr, dual_update=args.dual_update,
            constraint_target=args.constraint_target, tolerance=args.tolerance,
        )
        model = args.model or data.defaults.model
        seeds = list(range(args.seed_start, args.seed_start + args.seeds))
        n_runs = len(args.methods) * len(rates) * len(seeds)
        levels = "bits" if args.compress == "quantize" else "rates"
        print(f"{n_runs} runs: methods {' '.join(args.methods)} x {levels} "
              f"{' '.join(f'{r:g}' for r in rates)} x seeds {seeds} "
              f"({describe_net(params)}, {params['max_epochs']} epochs + "
              f"{params['fine_tune_epochs']} fine-tuning, {args.pruning_method}); "
              f"n_jobs={args.n_jobs}, torch threads per run {threads}")
        eg_params = {} if args.eg_max_iter is None else {"max_iter": args.eg_max_iter}
        gridsearch_params = {} if args.grid_size is None else {"grid_size": args.grid_size}
        failed = None
        try:
            result = run_sweep(
                data, model=model, methods=args.methods, rates=rates, seeds=seeds,
                net_params=params, n_jobs=args.n_jobs, threads=threads, out=args.out,
                figures=False, eg_constraint=args.eg_constraint,
                threshold_constraint=args.threshold_constraint, eg_params=eg_params,
                gridsearch_params=gridsearch_params, compress=args.compress,
                config={"command": "fairprune benchmark", "argv": sys.argv[1:]},
            )
        except RunsFailed as error:
            if error.sweep is None:  # no run finished: nothing was written
                _failed(error)
            failed, result = error, error.sweep
    print("\nmean [95 % t-interval] over seeds. fairness_violation = xi = max_a R(a) - min_a "
          "R(a) (eq. 3); max_excess_accuracy_gap = max_g psi_g, the most accuracy a group lost "
          "beyond the overall loss; both against the common dense net")
    print_summary(result.summary)  # to_string: every row and column, never truncated
    print("\nwrote " + ", ".join(str(f) for f in result.files))
    if failed is not None:
        _failed(failed)
    if not args.no_figures:
        from ..benchmark.figures import plot_sweep

        try:  # the results are already on disk
            figures = plot_sweep(result.table, args.out,
                                 title=f"{data.name}, {model}, groups by {data.grouping}",
                                 level="bits" if args.compress == "quantize" else "rate")
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


def _auto_or(parse: Callable[[str], float]) -> Callable[[str], float | str]:
    """``"auto"`` (FairConstrainedNet resolves it per constraint target) or ``parse(value)``."""

    def parse_or_auto(value: str) -> float | str:
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


#: ``--rates`` when neither it nor ``--compress quantize`` is given.
DEFAULT_RATES = (0.0, 0.5, 0.9)


#: The ``benchmark`` sub-parser's help and description.
BENCHMARK_COMMAND = {
    "help": "sweep methods x pruning rates x seeds on one dataset and model; write results.csv "
            "and figures",
    "description": "Train, prune and mitigate on one dataset and model for every method x "
                   "pruning rate x seed; print one line per run and a final table; write "
                   "results.csv (one row per run x group), summary.csv, meta.json and PNG "
                   "figures to --out. Without arguments: Adult (race x sex groups), MLP, rates "
                   "0 0.5 0.9, methods none ceag, 1 seed. UTKFace (the paper's setting, your "
                   "own copy of the images): --dataset utkface --data-path DIR (ResNet18, "
                   "32x32, ethnicity as label and group).",
}


def add_benchmark_options(bench: argparse.ArgumentParser) -> None:
    """The options of ``benchmark``; every value is checked at parse time."""
    from ..benchmark.methods import METHODS
    from ..benchmark.sweep import SWEEP_FINE_TUNE_EPOCHS, SWEEP_NET_DEFAULTS

    add_data_options(bench)
    add_net_options(
        bench, fine_tune_epochs=None,
        fine_tune_help=f"epochs after pruning, masks held (default "
                       f"{SWEEP_NET_DEFAULTS['fine_tune_epochs']}; fashion_mnist "
                       f"{SWEEP_FINE_TUNE_EPOCHS['fashion_mnist']}, the budget the "
                       "mitigations need there)",
        momentum=SWEEP_NET_DEFAULTS["momentum"], hidden=list(SWEEP_NET_DEFAULTS["hidden_units"]))
    sweep = bench.add_argument_group("sweep")
    sweep.add_argument("--rates", nargs="+", type=pruning_rate, action=Distinct,
                       default=None, metavar="RATE",
                       help="distinct pruning rates in [0, 1) (default: 0 0.5 0.9)")
    add_compression_options(sweep, "quantize runs none, threshold and the methods that "
                                   "constrain only the fine-tuning (ceag, gap_and_loss, ...)")
    sweep.add_argument("--methods", nargs="+", action=Distinct, default=["none", "ceag"],
                       choices=METHODS,
                       help="default: none ceag (ceag: FairConstrainedNet with "
                            "constraint_target=accuracy_gap at its defaults, the recommended "
                            "mitigation; fair_before/fair_after/fair_both: the paper's; eg, "
                            "gridsearch and threshold need two classes)")
    sweep.add_argument("--seeds", type=int_at_least(1), default=1,
                       help="number of seeds (default 1)")
    sweep.add_argument("--seed-start", type=int_at_least(0), default=0,
                       help="first seed (default 0)")
    sweep.add_argument("--out", type=output_folder, default="results",
                       help="output folder, made if missing; checked writable before anything "
                            "runs (default: results/)")
    sweep.add_argument("--dual-lr", type=_auto_or(nonnegative_float), default="auto",
                       help="dual step size of the fair_* and ceag methods (default auto: 0.05 "
                            "for group_loss / excess_risk, 1.0 for accuracy_gap)")
    sweep.add_argument("--dual-update", type=_dual_update, default="auto",
                       help="'epoch' or every k training batches (default auto: epoch for "
                            "group_loss / excess_risk, 20 batches for accuracy_gap)")
    sweep.add_argument("--tolerance", type=_auto_or(nonnegative_float), default="auto",
                       help="constraint tolerance epsilon of the fair_* and ceag methods "
                            "(default auto: 0)")
    sweep.add_argument("--constraint-target", default="group_loss",
                       choices=["group_loss", "excess_risk", "accuracy_gap"],
                       help="what the fair_* methods constrain: equal group losses (default, "
                            "the paper's), equal excess risks R(a), or psi_g <= tolerance "
                            "(accuracy_gap, CEAG); ceag always uses accuracy_gap")
    sweep.add_argument("--eg-constraint", default="error_rate_parity",
                       choices=["error_rate_parity", "bounded_group_loss"],
                       help="fairlearn moment of eg and gridsearch")
    sweep.add_argument("--eg-max-iter", type=int_at_least(1), default=None,
                       help="ExponentiatedGradient max_iter (fairlearn's default: 50 nets)")
    sweep.add_argument("--grid-size", type=int_at_least(1), default=None,
                       help="GridSearch grid_size (fairlearn's default: 10 nets)")
    sweep.add_argument("--threshold-constraint", default="demographic_parity",
                       choices=["demographic_parity", "equalized_odds"])
    sweep.add_argument("--n-jobs", type=n_jobs, default=1,
                       help="parallel runs through joblib (-1: all cores; default 1)")
    add_threads_argument(sweep, " per run")
    sweep.add_argument("--device", type=torch_device, default="cpu",
                       help="skorch device, e.g. cuda (default cpu); checked to exist here")
    sweep.add_argument("--no-figures", action="store_true", help="write no PNG figures")
    bench.set_defaults(handler=run_benchmark)
