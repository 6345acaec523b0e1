"""The ``fairprune`` command line: ``fairprune audit`` (and more subcommands as they land)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

DEFAULT_RATES = (0.5, 0.7, 0.9)


def _write_table(table: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        table.to_json(out, orient="records", indent=2)
    elif out.suffix == ".csv":
        table.to_csv(out, index=False)
    else:
        raise SystemExit(f"--out must end in .csv or .json; got {out}")


def _print_audit(table: pd.DataFrame, group_columns: list[str]) -> None:
    shown = group_columns + ["count", "loss_dense", "loss_pruned", "excess_risk",
                             "accuracy_dense", "accuracy_pruned", "accuracy_drop"]
    with pd.option_context("display.width", 160, "display.max_columns", 20,
                           "display.float_format", "{:.4f}".format):
        for rate, part in table.groupby("rate", sort=False):
            print(f"\npruning rate {rate:g}: sparsity {part['sparsity'].iloc[0]:.3f}, "
                  f"fairness violation xi = {part['fairness_violation'].iloc[0]:.4f}, "
                  f"accuracy gap = {part['accuracy_gap'].iloc[0]:.4f}")
            print(part[shown].sort_values("count", ascending=False).to_string(index=False))


def run_audit(args: argparse.Namespace) -> pd.DataFrame:
    """Train an MLP on the bundled Adult data, prune it at each rate, print the audit."""
    import torch

    from ..models import MLP
    from ..nets import PrunableNetClassifier
    from .audit import audit_rates, load_adult_split

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_adult_split(args.sensitive, n_train=args.n_train, random_state=args.seed)
    print(
        f"Adult: {len(data.y_train)} training rows, {len(data.y_test)} test rows, "
        f"{data.X_train.shape[1]} features after preprocessing; "
        f"groups: {', '.join(args.sensitive)}"
    )
    net = PrunableNetClassifier(
        MLP, module__hidden_units=tuple(args.hidden), max_epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, pruning_method=args.method, random_state=args.seed,
        verbose=0 if args.quiet else 1,
    )
    print(f"training the dense MLP {tuple(args.hidden)} for {args.epochs} epochs ...")
    net.fit(data.X_train, data.y_train)
    print(f"dense test accuracy {net.score(data.X_test, data.y_test):.4f}; pruning at "
          f"{', '.join(f'{r:g}' for r in args.rates)} ({args.method}, "
          f"{args.fine_tune_epochs} fine-tuning epochs each) ...")
    table = audit_rates(net, data.X_train, data.y_train, data.X_test, data.y_test, data.A_test,
                        args.rates, fine_tune_epochs=args.fine_tune_epochs)
    _print_audit(table, list(args.sensitive))
    if args.out is not None:
        _write_table(table, args.out)
        print(f"\nwrote {args.out}")
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return table


def _rate(value: str) -> float:
    rate = float(value)
    if not 0.0 <= rate < 1.0:
        raise argparse.ArgumentTypeError(f"a pruning rate must be in [0, 1); got {value}")
    return rate


def build_parser() -> argparse.ArgumentParser:
    from ..pruning import PRUNING_METHODS

    parser = argparse.ArgumentParser(
        prog="fairprune",
        description="Audit and mitigate the disparate impact of pruning on groups.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    audit = commands.add_parser(
        "audit",
        help="train an MLP on the bundled Adult data, prune it, print R(a) and xi per group",
    )
    audit.add_argument("--sensitive", nargs="+", default=["race"], choices=["race", "sex"],
                       help="sensitive column(s); several give intersectional groups "
                       "(default: race)")
    audit.add_argument("--rates", nargs="+", type=_rate, default=list(DEFAULT_RATES),
                       help="pruning rates (default: 0.5 0.7 0.9)")
    audit.add_argument("--method", default="global_magnitude", choices=PRUNING_METHODS)
    audit.add_argument("--epochs", type=int, default=10, help="dense training epochs (default 10)")
    audit.add_argument("--fine-tune-epochs", type=int, default=1,
                       help="epochs of fine-tuning after pruning, masks held (default 1)")
    audit.add_argument("--hidden", nargs="+", type=int, default=[64, 64],
                       help="hidden layer sizes of the MLP (default 64 64)")
    audit.add_argument("--lr", type=float, default=0.05)
    audit.add_argument("--batch-size", type=int, default=256)
    audit.add_argument("--n-train", type=int, default=None,
                       help="subsample the training set to this many rows")
    audit.add_argument("--seed", type=int, default=0)
    audit.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    audit.add_argument("--out", type=Path, default=None,
                       help="write the table to a .csv or .json file")
    audit.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    audit.set_defaults(handler=run_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fairprune`` console script."""
    args = build_parser().parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
