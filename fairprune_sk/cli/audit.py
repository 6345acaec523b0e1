"""``fairprune audit``: train a net, prune copies of it, and say which groups paid, with intervals.

The data come from :mod:`fairprune_sk.datasets`, the net from :mod:`fairprune_sk.nets`, the
audit and its report from :func:`fairprune_sk.audit.audit_pruning`; this module prints and
writes them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._data_options import add_data_options, add_net_options, describe_net, load_data, net_params
from ._types import (
    Distinct,
    add_compression_options,
    add_threads_argument,
    command_error,
    compression_levels,
    input_file,
    int_at_least,
    output_file,
    pruning_rate,
    torch_threads,
)


def write_table(table: pd.DataFrame, out: Path) -> None:
    """Write the audit table as CSV or JSON (by the extension)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        table.to_json(out, orient="records", indent=2)
    else:
        table.to_csv(out, index=False)


def write_results(audit: Any, out: Path | None) -> None:
    """The table to ``out``, then the figures beside it (a plotting failure keeps the table)."""
    if out is None:
        return
    write_table(audit.table, out)
    print(f"\nwrote {out}")
    try:
        paths = audit.plot(out)
        print("wrote " + ", ".join(str(p) for p in paths))
    except Exception as exc:  # the table is already safe on disk
        print(f"could not draw the figures ({type(exc).__name__}: {exc}); the table is "
              "written", file=sys.stderr)


def run_audit(args: argparse.Namespace) -> pd.DataFrame:
    """Train a net on the chosen data, prune it at each rate, print and write the audit; or,
    with ``--predictions``, audit outputs computed elsewhere."""
    if args.predictions is not None:
        return run_predictions_audit(args)
    from ..audit import audit_pruning
    from ..nets import PrunableNetClassifier

    levels = compression_levels("audit", args, ())
    start = time.perf_counter()
    with torch_threads(args.threads):
        data = load_data("audit", args, data_seed=args.seed if args.data_seed is None
                         else args.data_seed)
        print(data.describe())
        for note in data.notes:
            print(note)
        rates = levels or data.defaults.rates
        params = net_params(args, data, verbose=0 if args.quiet else 1)
        net = PrunableNetClassifier(**params, random_state=args.seed)
        print(f"training the dense {describe_net(params)} for {params['max_epochs']} epochs ...")
        net.fit(data.X_train, data.y_train)
        predicted = net.predict(data.X_test)
        if len(set(predicted.tolist())) == 1:
            print(f"fairprune: warning: the dense net predicts {predicted.tolist()[0]!r} for "
                  "every test row: it has learnt nothing to prune; train longer (--epochs) or "
                  "faster (--lr)",
                  file=sys.stderr)
        doing = (f"quantizing to {', '.join(map(str, rates))} bits (" if args.compress ==
                 "quantize" else
                 f"pruning at {', '.join(f'{r:g}' for r in rates)} ({args.pruning_method}, ")
        print(f"dense test accuracy {np.mean(predicted == data.y_test):.4f}; {doing}"
              f"{args.fine_tune_epochs} fine-tuning epoch(s) each"
              + (", and a fine-tuned, uncompressed control" if args.fine_tune_epochs else "")
              + f"), {args.n_boot} bootstrap resamples of the test rows ...")
        audit = audit_pruning(
            net, data.X_train, data.y_train, data.X_test, data.y_test, data.groups_test, rates,
            method=args.pruning_method, fine_tune_epochs=args.fine_tune_epochs,
            n_boot=args.n_boot, random_state=args.seed, compress=args.compress,
            sensitive_train=data.groups_train,
        )
    print(audit.report())
    write_results(audit, args.out)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return audit.table


#: What ``--predictions`` takes besides itself; every other option concerns training.
_PREDICTIONS_OPTIONS = {"predictions", "sensitive", "n_boot", "seed", "out", "quiet", "threads",
                        "command", "handler", "parser"}


def run_predictions_audit(args: argparse.Namespace) -> pd.DataFrame:
    """Audit outputs computed elsewhere (``--predictions``): no net is trained, torch is not
    imported."""
    from ..audit import audit_outputs
    from ..datasets import DataOptionError, load_predictions

    start = time.perf_counter()
    wrong = [action.option_strings[0] for action in args.parser._actions
             if action.dest not in _PREDICTIONS_OPTIONS and action.option_strings
             and getattr(args, action.dest, action.default) != action.default]
    if wrong:
        command_error("audit", f"{wrong[0]} does not apply to --predictions (outputs computed "
                               "elsewhere: nothing is trained or pruned)")
    if args.sensitive is None:
        command_error("audit", f"--sensitive must name the group column(s) of --predictions "
                               f"{args.predictions}")
    try:
        outputs = load_predictions(args.predictions, sensitive=args.sensitive)
        audit = audit_outputs(outputs.y_true, outputs.proba_dense, outputs.proba_compressed,
                              sensitive_features=outputs.groups, classes=outputs.classes,
                              n_boot=args.n_boot, random_state=args.seed)
    except DataOptionError as error:
        flag = "--predictions" if error.parameter == "path" else f"--{error.parameter}"
        command_error("audit", f"{flag} {error.detail}")
    except ValueError as error:  # probabilities that are not probabilities
        command_error("audit", f"--predictions {args.predictions}: {error}")
    groups = outputs.groups.drop_duplicates()
    print(f"{outputs.name}: {len(outputs.y_true)} rows, {len(outputs.classes)} classes, "
          f"{len(groups)} groups by {' & '.join(outputs.groups.columns)}; {args.n_boot} "
          "bootstrap resamples ...")
    print(audit.report())
    write_results(audit, args.out)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return audit.table


#: The ``audit`` sub-parser's help and description.
AUDIT_COMMAND = {
    "help": "train a net, prune it at several rates, report R(a), xi and psi per group with "
            "95 %% bootstrap intervals, and say whether the disparity is significant",
    "description": "Train a dense net, prune copies of it at each rate (fine-tuning each if "
                   "asked), and audit every group on the test set: R(a) (eq. 2), xi (eq. 3), "
                   "the excess accuracy gap psi, flip rates, with 95 % bootstrap intervals. "
                   "Defaults per dataset: adult (bundled) race x sex groups, rates 0.5 0.9 "
                   "0.98; fashion_mnist classes as groups, 10,000 training images, rates 0.5 "
                   "0.7 0.8; digits and utkface rates 0.5 0.8 0.9; your own table (--csv) "
                   "0.5 0.8 0.9; no fine-tuning. With --compress quantize, quantize the "
                   "copies to --bits (default 8 4 3 2) instead. With --predictions, audit the "
                   "outputs of a dense and a compressed model computed elsewhere.",
}


def add_audit_options(audit: argparse.ArgumentParser) -> None:
    """The options of ``audit``; every value is checked at parse time."""
    from ..datasets import PREDICTION_SUFFIXES

    add_data_options(audit)
    add_net_options(
        audit, fine_tune_epochs=0,
        fine_tune_help="epochs of fine-tuning after pruning, masks held (default 0: R(a) is "
                       "pruning's effect alone; with N > 0 a fine-tuned, unpruned control is "
                       "audited too)")
    report = audit.add_argument_group("audit")
    report.add_argument("--predictions", type=input_file(PREDICTION_SUFFIXES), default=None,
                        metavar="FILE",
                        help="audit outputs computed elsewhere instead of training: a .csv, "
                             ".parquet or .npz file with the columns y_true, the --sensitive "
                             "column(s), proba_dense_<class> and proba_compressed_<class> for "
                             "every class")
    report.add_argument("--rates", nargs="+", type=pruning_rate, action=Distinct, default=None,
                        metavar="RATE",
                        help="distinct pruning rates in [0, 1) (default: adult 0.5 0.9 0.98, "
                             "fashion_mnist 0.5 0.7 0.8, digits, utkface and --csv 0.5 0.8 0.9)")
    add_compression_options(report, "the audit's table has a bits column instead of rate")
    report.add_argument("--n-boot", type=int_at_least(1), default=1000,
                        help="bootstrap resamples of the test rows for the 95 %% intervals "
                             "(default 1000)")
    report.add_argument("--seed", type=int_at_least(0), default=0,
                        help="seed of the net and of the resamples (default 0)")
    add_threads_argument(report)
    report.add_argument("--out", type=output_file((".csv", ".json")), default=None,
                        help="write the table to a .csv or .json file, and the figures "
                             "<name>_groups.png and <name>_accuracy_change.png beside it; "
                             "checked writable before anything runs")
    report.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    audit.set_defaults(handler=run_audit, parser=audit)
