"""``fairprune explain``: the paper's per-group factors (Theorem 1) for a pruned or quantized
net."""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from ._data_options import add_data_options, add_net_options, describe_net, load_data, net_params
from ._types import (
    add_threads_argument,
    command_error,
    float_in,
    int_at_least,
    output_file,
    quantization_bits,
    torch_threads,
)

#: The pruning rate and the width explained when neither ``--rate`` nor ``--bits`` is given.
DEFAULT_RATE, DEFAULT_BITS = 0.8, 3

#: Columns printed (the CSV gets all of ``GroupDiagnostics.by_group``): the audit table's
#: names (``ExcessRiskFrame``), then the factors of Theorem 1.
EXPLAIN_COLUMNS = [
    "count", "accuracy_dense", "accuracy_pruned", "excess_risk", "excess_accuracy_gap",
    "gradient_norm", "hessian_max_eig", "boundary_closeness", "bound_gradient_term",
    "bound_hessian_term", "bound", "taylor_estimate",
]


def _compression(args: argparse.Namespace) -> tuple[float | None, int | None]:
    """``(rate, None)`` for ``--compress prune``, ``(None, bits)`` for ``quantize``; a flag of
    the other compression is one line on stderr and exit status 2, before anything runs."""
    if args.compress == "quantize":
        if args.rate is not None:
            command_error("explain", "--rate does not apply to --compress quantize (give the "
                                     "bit width with --bits)")
        return None, DEFAULT_BITS if args.bits is None else args.bits
    if args.bits is not None:
        command_error("explain", "--bits needs --compress quantize (pruning takes --rate)")
    return DEFAULT_RATE if args.rate is None else args.rate, None


def run_explain(args: argparse.Namespace) -> pd.DataFrame:
    """Train a net, prune a copy at ``--rate`` (or quantize it to ``--bits``), print
    ``GroupDiagnostics.by_group``."""
    from ..diagnostics import GroupDiagnostics
    from ..nets import PrunableNetClassifier

    rate, bits = _compression(args)
    start = time.perf_counter()
    with torch_threads(args.threads):
        data = load_data("explain", args, data_seed=args.seed if args.data_seed is None
                         else args.data_seed)
        print(data.describe())
        for note in data.notes:
            print(note)
        params = net_params(args, data, verbose=0 if args.quiet else 1)
        net = PrunableNetClassifier(**params, random_state=args.seed)
        print(f"training the dense {describe_net(params)} on {len(data.y_train)} {data.name} "
              "rows ...")
        net.fit(data.X_train, data.y_train)
        if bits is None:
            pruned = net.pruned_copy(rate, args.pruning_method, X=data.X_train,
                                     y=data.y_train, fine_tune_epochs=args.fine_tune_epochs,
                                     sensitive_features=data.groups_train)
            level = f"pruning rate {rate:g} ({args.pruning_method}, "
        else:  # the Theorem 1 distance ‖θ̂ − θ*‖ is then the quantization error
            pruned = net.quantized_copy(bits)
            if args.fine_tune_epochs:
                pruned.fine_tune(data.X_train, data.y_train, args.fine_tune_epochs)
            level = f"{bits} bits ("
        X, y, groups = ((data.X_train, data.y_train, data.groups_train) if args.data == "train"
                        else (data.X_test, data.y_test, data.groups_test))
        print(f"diagnostics at {level}{args.fine_tune_epochs} fine-tuning epochs) on the "
              f"{args.data} data ...")
        diagnostics = GroupDiagnostics(pruned, X, y, sensitive_features=groups,
                                       max_iter=args.max_iter, random_state=args.seed)
    table = diagnostics.by_group
    shown = [c for c in EXPLAIN_COLUMNS if c in table.columns]
    # every row and column, whatever the terminal's width: pandas never elides a column here
    with pd.option_context("display.width", None, "display.max_columns", None,
                           "display.max_rows", None, "display.max_colwidth", None,
                           "display.float_format", "{:.4g}".format):
        print(table[shown].sort_values("count", ascending=False).to_string())
        frame = diagnostics.frame
        print(f"\nfairness_violation (ξ = max R(a) − min R(a)): {frame.fairness_violation:.4g}")
        print(f"max_excess_accuracy_gap (max ψ_g): {frame.max_excess_accuracy_gap:.4g}")
        print("\nrank correlation (Spearman) across groups of R(a) with each factor:")
        print(diagnostics.correlations().to_string())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out)
        print(f"\nwrote {args.out}")
        figure_path = args.out.with_suffix(".png")
        try:
            import matplotlib.pyplot as plt

            figure = diagnostics.plot()
            figure.savefig(figure_path, dpi=120)
            plt.close(figure)
            print(f"wrote {figure_path}")
        except Exception as exc:  # the table is already safe on disk
            print(f"could not draw the figure ({type(exc).__name__}: {exc}); the table is "
                  "written", file=sys.stderr)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return table


#: The ``explain`` sub-parser's help and description.
EXPLAIN_COMMAND = {
    "help": "per-group gradient norms, Hessian eigenvalues, boundary closeness and the "
            "Theorem 1 bound next to the measured R(a)",
    "description": "Train a dense net, prune a copy at --rate (or quantize it to --bits with "
                   "--compress quantize), and measure per group the factors of Theorem 1 "
                   "(gradient norm, top Hessian eigenvalue, closeness to the decision boundary) "
                   "next to the measured excess risk R(a).",
}


def add_explain_options(explain: argparse.ArgumentParser) -> None:
    """The options of ``explain``; every value is checked at parse time."""
    add_data_options(explain)
    add_net_options(
        explain, fine_tune_epochs=0,
        fine_tune_help="fine-tuning after pruning (default 0: Theorem 1 compares the pruned "
                       "weights with the dense ones directly)")
    factors = explain.add_argument_group("explain")
    factors.add_argument("--rate", type=float_in(0.0, 1.0, name="a pruning rate"),
                         default=None, help=f"pruning rate in (0, 1) (default {DEFAULT_RATE})")
    factors.add_argument("--compress", choices=["prune", "quantize"], default="prune",
                         help="prune the copy at --rate (default), or quantize it (simulated "
                              "symmetric weights per output channel) to --bits; the bound's "
                              "‖θ̂ − θ*‖ is then the quantization error")
    factors.add_argument("--bits", type=quantization_bits, default=None,
                         help="weight width in [2, 8] of --compress quantize (default "
                              f"{DEFAULT_BITS})")
    factors.add_argument("--data", choices=["train", "test"], default="train",
                         help="data the factors are measured on (default train)")
    factors.add_argument("--max-iter", type=int_at_least(1), default=100,
                         help="Lanczos iterations for the Hessian eigenvalues (default 100)")
    factors.add_argument("--seed", type=int_at_least(0), default=0,
                         help="seed of the net and of the eigen-solver (default 0)")
    add_threads_argument(factors)
    factors.add_argument("--out", type=output_file((".csv",)), default=None,
                         help="write the table (.csv) and the figure (same name, .png); "
                              "checked writable before anything runs")
    factors.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    explain.set_defaults(handler=run_explain)
