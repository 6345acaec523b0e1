"""``fairprune explain``: the paper's per-group factors for a pruned MLP on bundled Adult data."""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from ._types import (
    add_threads_argument,
    float_in,
    int_at_least,
    output_file,
    positive_float,
)

#: Columns printed (the CSV gets all of ``GroupDiagnostics.by_group``): the audit table's
#: names (``ExcessRiskFrame``), then the factors of Theorem 1.
EXPLAIN_COLUMNS = [
    "count", "accuracy_dense", "accuracy_pruned", "excess_risk", "excess_accuracy_gap",
    "gradient_norm", "hessian_max_eig", "boundary_closeness", "bound_gradient_term",
    "bound_hessian_term", "bound", "taylor_estimate",
]


def run_explain(args: argparse.Namespace) -> pd.DataFrame:
    """Train an MLP on Adult, prune a copy at ``--rate``, print ``GroupDiagnostics.by_group``."""
    import torch

    from ..audit import load_adult_split
    from ..diagnostics import GroupDiagnostics
    from ..models import MLP
    from ..nets import PrunableNetClassifier

    torch.set_num_threads(args.threads)  # the policy of every subcommand: _types.py
    start = time.perf_counter()
    data = load_adult_split(args.sensitive, n_train=args.n_train, random_state=args.seed)
    net = PrunableNetClassifier(
        MLP, module__hidden_units=tuple(args.hidden), max_epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, random_state=args.seed, verbose=0 if args.quiet else 1,
    )
    print(f"training the dense MLP {tuple(args.hidden)} on {len(data.y_train)} Adult rows ...")
    net.fit(data.X_train, data.y_train)
    pruned = net.pruned_copy(args.rate, args.method, X=data.X_train, y=data.y_train,
                             fine_tune_epochs=args.fine_tune_epochs)
    X, y, groups = ((data.X_train, data.y_train, data.A_train) if args.data == "train"
                    else (data.X_test, data.y_test, data.A_test))
    print(f"diagnostics at pruning rate {args.rate:g} ({args.method}, "
          f"{args.fine_tune_epochs} fine-tuning epochs) on the {args.data} data ...")
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


def add_explain_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``explain`` subcommand."""
    from ..pruning import PRUNING_METHODS

    explain = commands.add_parser(
        "explain",
        help="per-group gradient norms, Hessian eigenvalues, boundary closeness and the "
        "Theorem 1 bound next to the measured R(a), on the bundled Adult data",
    )
    explain.add_argument("--rate", type=float_in(0.0, 1.0, name="a pruning rate"),
                         default=0.8, help="pruning rate in (0, 1) (default 0.8)")
    explain.add_argument("--sensitive", nargs="+", default=["race"], choices=["race", "sex"])
    explain.add_argument("--method", default="global_magnitude", choices=PRUNING_METHODS)
    explain.add_argument("--fine-tune-epochs", type=int_at_least(0), default=0,
                         help="fine-tuning after pruning (default 0: Theorem 1 compares the "
                         "pruned weights with the dense ones directly)")
    explain.add_argument("--data", choices=["train", "test"], default="train",
                         help="data the factors are measured on (default train)")
    explain.add_argument("--epochs", type=int_at_least(1), default=10)
    explain.add_argument("--hidden", nargs="+", type=int_at_least(1), default=[64, 64])
    explain.add_argument("--lr", type=positive_float, default=0.05)
    explain.add_argument("--batch-size", type=int_at_least(1), default=256)
    explain.add_argument("--max-iter", type=int_at_least(1), default=100,
                         help="Lanczos iterations for the Hessian eigenvalues")
    explain.add_argument("--n-train", type=int_at_least(2), default=None,
                         help="subsample the training set to this many rows")
    explain.add_argument("--seed", type=int_at_least(0), default=0)
    add_threads_argument(explain)
    explain.add_argument("--out", type=output_file((".csv",)), default=None,
                         help="write the table (.csv) and the figure (same name, .png)")
    explain.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    explain.set_defaults(handler=run_explain)
