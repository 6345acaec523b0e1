"""``fairprune audit``: train a net, prune copies of it, and say which groups paid, with intervals.

The report ends in plain words: which group lost most at the highest rate (with its 95 %
bootstrap interval), whether the disparity is statistically real (one group's R(a) interval
lies entirely above another's), and what R(a), ξ and ψ mean.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._types import (
    add_threads_argument,
    command_error,
    int_at_least,
    load_data_or_exit,
    output_file,
    positive_float,
    pruning_rate,
)

#: Per-dataset defaults of the audit, chosen by the measurements in docs/benchmark.md ("The
#: audit demo"). No fine-tuning by default: R(a) is then pruning's effect alone (at rate 0 it is
#: exactly 0). With fine-tuning, part of R(a) is the extra training of a net that was not at a
#: minimum, which the audit measures with a fine-tuned, unpruned control.
AUDIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "adult": {"sensitive": ["race", "sex"], "rates": [0.5, 0.9, 0.98], "hidden": [64, 64],
              "epochs": 10, "lr": 0.05, "momentum": 0.0, "batch_size": 256, "n_train": None,
              "fine_tune_epochs": 0},
    "fashion_mnist": {"sensitive": ["class"], "rates": [0.5, 0.7, 0.8], "hidden": [128, 64],
                      "epochs": 8, "lr": 0.01, "momentum": 0.9, "batch_size": 128,
                      "n_train": 10_000, "fine_tune_epochs": 0},
    "digits": {"sensitive": ["class"], "rates": [0.5, 0.8, 0.9], "hidden": [64, 64],
               "epochs": 20, "lr": 0.1, "momentum": 0.0, "batch_size": 64, "n_train": None,
               "fine_tune_epochs": 0},
    # the paper's Fig. 1 / Fig. 5 setting: ethnicity as label and group, a ResNet18
    "utkface": {"sensitive": ["race"], "target": "race", "rates": [0.5, 0.8, 0.9],
                "hidden": [64, 64], "epochs": 10, "lr": 0.01, "momentum": 0.9,
                "batch_size": 128, "n_train": None, "fine_tune_epochs": 0},
}

MEANINGS = (
    "R(a), excess_risk: the group's cross-entropy after pruning minus before (eq. 2); > 0 means "
    "pruning cost the group.",
    "xi, fairness_violation: the largest gap between two groups' R(a) (eq. 3); 0 means every "
    "group paid the same.",
    "psi, excess_accuracy_gap: the group's accuracy drop minus the overall drop (Balancing Act, "
    "ICLR 2024); > 0 means the group lost more accuracy than the average.",
)


def _group_name(label: Any) -> str:
    return " & ".join(map(str, label)) if isinstance(label, tuple) else str(label)


def _with_interval(value: float, low: float, high: float, digits: int = 3,
                   sign: str = "+") -> str:
    if np.isnan(low):
        return f"{value:{sign}.{digits}f}"
    return f"{value:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def format_rate_table(frame: Any) -> pd.DataFrame:
    """The printed per-group table of one rate: counts, accuracies, R(a) and ψ with intervals."""
    by_group = frame.by_group
    ci = frame.by_group_ci if frame.n_boot is not None else None
    rows = []
    for group, row in by_group.sort_values("excess_risk", ascending=False).iterrows():
        bounds = {
            column: (ci[0].loc[group, column], ci[-1].loc[group, column]) if ci is not None
            else (np.nan, np.nan)
            for column in ("excess_risk", "excess_accuracy_gap")
        }
        rows.append({
            "group": _group_name(group),
            "n": int(row["count"]),
            "acc dense": f"{row['accuracy_dense']:.3f}",
            "acc pruned": f"{row['accuracy_pruned']:.3f}",
            "R(a) [95% CI]": _with_interval(row["excess_risk"], *bounds["excess_risk"]),
            "psi [95% CI]": _with_interval(row["excess_accuracy_gap"],
                                           *bounds["excess_accuracy_gap"]),
            "flip rate": f"{row['flip_rate']:.3f}",
        })
    return pd.DataFrame(rows)


def verdict(frame: Any, rate: float, n_rows: int) -> list[str]:
    """Plain-words lines: who lost most, and whether the disparity is beyond the noise."""
    by_group = frame.by_group
    worst = by_group["excess_risk"].idxmax()
    lines = [f"At pruning rate {rate:g} (the highest audited):"]
    if frame.n_boot is None:
        lines.append(f"  Lost most: {_group_name(worst)}, R(a) = "
                     f"{by_group.loc[worst, 'excess_risk']:.3f} (no intervals: --n-boot not set)")
        return lines
    low, high = frame.by_group_ci[0], frame.by_group_ci[-1]
    lines.append(
        f"  Lost most: {_group_name(worst)} (n={by_group.loc[worst, 'count']}), R(a) = "
        f"{_with_interval(by_group.loc[worst, 'excess_risk'], low.loc[worst, 'excess_risk'], high.loc[worst, 'excess_risk'])}"  # noqa: E501
        f"; accuracy {by_group.loc[worst, 'accuracy_dense']:.3f} -> "
        f"{by_group.loc[worst, 'accuracy_pruned']:.3f}, psi = "
        f"{_with_interval(by_group.loc[worst, 'excess_accuracy_gap'], low.loc[worst, 'excess_accuracy_gap'], high.loc[worst, 'excess_accuracy_gap'])}."  # noqa: E501
    )
    pairs = frame.separated_pairs("excess_risk")
    strict = frame.separated_pairs("excess_risk", simultaneous=True)
    n_groups, n_pairs = len(by_group), len(by_group) * (len(by_group) - 1) // 2
    xi_text = f"xi = {_xi_text(frame)}"
    if len(strict):
        top = strict.iloc[0]
        lines.append(
            f"  Significant: YES. {len(strict)} of {n_pairs} pairs of groups are separated even "
            f"by intervals adjusted for comparing {n_groups} groups at once (Bonferroni); e.g. "
            f"{_group_name(top['higher'])} [from {top['higher_low']:+.3f}] lies entirely above "
            f"{_group_name(top['lower'])} [up to {top['lower_high']:+.3f}]. {xi_text}."
        )
    elif len(pairs):
        top = pairs.iloc[0]
        lines.append(
            f"  Significant: WEAK. {len(pairs)} of {n_pairs} pairs have non-overlapping 95 % "
            f"intervals (e.g. {_group_name(top['higher'])} [from {top['higher_low']:+.3f}] above "
            f"{_group_name(top['lower'])} [up to {top['lower_high']:+.3f}]), but none once the "
            f"intervals are adjusted for comparing {n_groups} groups at once: with that many "
            f"pairs, a separation this small can be chance. {xi_text}."
        )
    else:
        lines.append(
            f"  Significant: NO. Every pair of groups' 95 % intervals of R(a) overlaps, so the "
            f"disparity ({xi_text}) is within the noise of the {n_rows} evaluation rows."
        )
    lines.append(
        f"  Intervals: {frame.n_boot} bootstrap resamples of the {n_rows} evaluation rows, for "
        "this one trained net; training-seed noise is not included (fairprune benchmark "
        "--seeds 5 measures it)."
    )
    return lines


def _xi_text(frame: Any) -> str:
    if frame.n_boot is None:
        return f"{frame.fairness_violation:.3f}"
    low, high = frame.difference_ci()[0]["excess_risk"], frame.difference_ci()[-1]["excess_risk"]
    return _with_interval(frame.fairness_violation, low, high, sign="")


def print_audit(table: pd.DataFrame, frames: dict[float, Any], dense_accuracy: float,
                n_rows: int, stream: Any = None, control: Any = None) -> None:
    """Print one table per rate, then the verdict at the highest rate and what the numbers mean.

    ``control`` is the audit of the dense net fine-tuned like the pruned ones but not pruned:
    the part of R(a) that comes from the extra training alone.
    """
    stream = sys.stdout if stream is None else stream
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.max_colwidth", 60):
        for rate, frame in frames.items():
            part = table[table["rate"] == rate]
            overall = frame.overall
            psi = frame.max_excess_accuracy_gap
            if frame.n_boot is not None:
                psi_ci = frame.group_max_ci()
                psi_text = _with_interval(psi, psi_ci[0]["excess_accuracy_gap"],
                                          psi_ci[-1]["excess_accuracy_gap"])
            else:
                psi_text = f"{psi:+.3f}"
            print(f"\npruning rate {rate:g} (sparsity {part['sparsity'].iloc[0]:.3f}): accuracy "
                  f"{overall['accuracy_pruned']:.4f} (dense {dense_accuracy:.4f}); "
                  f"xi = {_xi_text(frame)}; max psi = {psi_text}", file=stream)
            print(format_rate_table(frame).to_string(index=False), file=stream)
    highest = max(frames)
    print("", file=stream)
    for line in verdict(frames[highest], highest, n_rows):
        print(line, file=stream)
    if control is not None:
        print(f"  Control: the dense net fine-tuned the same epochs WITHOUT pruning has xi = "
              f"{_xi_text(control)} (pruned at {highest:g}: {_xi_text(frames[highest])}). The "
              "part of the disparity the control shows comes from the extra training, not from "
              "pruning.", file=stream)
    print("\nWhat the numbers mean:", file=stream)
    for line in MEANINGS:
        print(f"  {line}", file=stream)


def write_table(table: pd.DataFrame, out: Path) -> None:
    """Write the audit table as CSV or JSON (by the extension)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    flat = table.copy()
    if out.suffix == ".json":
        flat.to_json(out, orient="records", indent=2)
    else:
        flat.to_csv(out, index=False)


def plot_audit(frames: dict[float, Any], out: Path) -> list[Path]:
    """``<out>_groups.png`` (R(a) and ψ per group at the highest rate, with intervals) and
    ``<out>_accuracy_change.png`` (each group's accuracy change from the dense net against the
    pruning rate, with interval bands: the paper's Fig. 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    highest = max(frames)
    frame = frames[highest]
    n_groups = len(frame.by_group)
    figure, axes = plt.subplots(1, 2, figsize=(12, 0.42 * n_groups + 2.0), layout="constrained")
    frame.plot("excess_risk", ax=axes[0])
    frame.plot("excess_accuracy_gap", ax=axes[1], sort="excess_risk")  # same order
    figure.suptitle(f"Who paid for pruning at rate {highest:g}")
    paths = [out.with_name(f"{out.stem}_groups.png")]
    figure.savefig(paths[0], dpi=120)
    plt.close(figure)

    rates = sorted(frames)
    figure, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    groups = frame.by_group.index
    colors = plt.get_cmap("tab10" if n_groups <= 10 else "tab20")(np.arange(n_groups) % 20)
    # the dense net itself (rate 0, no fine-tuning) changes nothing: every line starts at 0
    anchor = [] if 0.0 in frames else [0.0]
    xs = anchor + rates
    for color, group in zip(colors, groups, strict=True):
        change = [0.0] * len(anchor) + [
            -frames[r].by_group.loc[group, "accuracy_drop"] for r in rates]
        label = f"{_group_name(group)} (n={frame.by_group.loc[group, 'count']})"
        ax.plot(xs, change, marker="o", color=color, label=label)
        if frame.n_boot is not None:
            low = [0.0] * len(anchor) + [
                -frames[r].by_group_ci[-1].loc[group, "accuracy_drop"] for r in rates]
            high = [0.0] * len(anchor) + [
                -frames[r].by_group_ci[0].loc[group, "accuracy_drop"] for r in rates]
            ax.fill_between(xs, low, high, color=color, alpha=0.08)
    overall = [0.0] * len(anchor) + [-frames[r].overall["accuracy_drop"] for r in rates]
    ax.plot(xs, overall, color="black", linestyle="--", linewidth=2, label="overall")
    ax.axhline(0.0, color="gray", linewidth=0.8)
    ax.set_xlabel("pruning rate")
    ax.set_ylabel("accuracy change from the dense net")
    band = " (bands: 95 % bootstrap intervals)" if frame.n_boot is not None else ""
    ax.set_title(f"Per-group accuracy change with pruning{band}", fontsize=10)
    ax.legend(fontsize=7, loc="lower left", ncol=2 if n_groups > 6 else 1)
    paths.append(out.with_name(f"{out.stem}_accuracy_change.png"))
    figure.savefig(paths[1], dpi=120)
    plt.close(figure)
    return paths


def run_audit(args: argparse.Namespace) -> pd.DataFrame:
    """Train a net on the chosen dataset, prune it at each rate, print and write the audit."""
    import torch

    from ..audit import audit_rates
    from ..benchmark.configs import net_params_for
    from ..benchmark.data import DEFAULT_MODELS
    from ..nets import PrunableNetClassifier

    defaults = AUDIT_DEFAULTS[args.dataset]
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.model is None:
        args.model = DEFAULT_MODELS[args.dataset]
    if args.target is not None and args.dataset != "utkface":
        command_error("audit", "--target applies to --dataset utkface only")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_data_or_exit(
        "audit", args.dataset, model=args.model,
        sensitive=args.sensitive if args.dataset in ("adult", "utkface") else ("race",),
        n_train=args.n_train, data_path=args.data_path, random_state=args.seed,
        target=args.target, image_size=args.image_size,
    )
    print(data.describe())
    for note in data.notes:
        print(note)
    params = net_params_for(
        args.model, dataset=args.dataset, max_epochs=args.epochs, fine_tune_epochs=0,
        lr=args.lr, batch_size=args.batch_size, momentum=args.momentum,
        pruning_method=args.method, hidden_units=args.hidden, width=args.width,
    )
    from ..benchmark.methods import _plain_params

    params = _plain_params(params)  # a plain PrunableNetClassifier: no FairConstrainedNet keys
    params["verbose"] = 0 if args.quiet else 1
    net = PrunableNetClassifier(**params, random_state=args.seed)
    shape = f"MLP {tuple(args.hidden)}" if args.model == "mlp" else args.model
    print(f"training the dense {shape} for {args.epochs} epochs ...")
    net.fit(data.X_train, data.y_train)
    dense_accuracy = float(net.score(data.X_test, data.y_test))
    print(f"dense test accuracy {dense_accuracy:.4f}; pruning at "
          f"{', '.join(f'{r:g}' for r in args.rates)} ({args.method}, "
          f"{args.fine_tune_epochs} fine-tuning epoch(s) each), {args.n_boot} bootstrap "
          "resamples of the test rows ...")
    table, frames = audit_rates(
        net, data.X_train, data.y_train, data.X_test, data.y_test, data.A_test, args.rates,
        method=args.method, fine_tune_epochs=args.fine_tune_epochs, n_boot=args.n_boot,
        random_state=args.seed,
    )
    control = None
    if args.fine_tune_epochs > 0:
        from ..metrics import ExcessRiskFrame

        print(f"control: the dense net fine-tuned {args.fine_tune_epochs} epoch(s) without "
              "pruning ...")
        tuned = net.pruned_copy(0.0, X=data.X_train, y=data.y_train,
                                fine_tune_epochs=args.fine_tune_epochs)
        control = ExcessRiskFrame(tuned, data.X_test, data.y_test, sensitive_features=data.A_test,
                                  reference=net, n_boot=args.n_boot, random_state=args.seed)
    print_audit(table, frames, dense_accuracy, len(data.y_test), control=control)
    if args.out is not None:
        write_table(table, args.out)
        print(f"\nwrote {args.out}")
        try:
            paths = plot_audit(frames, args.out)
            print("wrote " + ", ".join(str(p) for p in paths))
        except Exception as exc:  # the table is already safe on disk
            print(f"could not draw the figures ({type(exc).__name__}: {exc}); the table is "
                  "written", file=sys.stderr)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return table


def add_audit_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``audit`` sub-parser; every value is checked at parse time."""
    from ..pruning import PRUNING_METHODS

    audit = commands.add_parser(
        "audit",
        help="train a net, prune it at several rates, report R(a), xi and psi per group with "
             "95 %% bootstrap intervals, and say whether the disparity is significant",
        description="Train a dense net, prune copies of it at each rate (fine-tuning each if "
                    "asked), and audit every group on the test set: R(a) (eq. 2), xi (eq. 3), the "
                    "excess accuracy gap psi, flip rates, with 95 % bootstrap intervals. "
                    "Defaults per dataset: adult (bundled) race x sex groups, rates 0.5 0.9 "
                    "0.98; fashion_mnist (Debian package dataset-fashion-mnist) classes as "
                    "groups, 10,000 training images, rates 0.5 0.7 0.8; no fine-tuning.",
    )
    audit.add_argument("--dataset", default="adult", choices=sorted(AUDIT_DEFAULTS),
                       help="adult (bundled, default), fashion_mnist (Debian "
                            "dataset-fashion-mnist or --data-path), digits (scikit-learn) or "
                            "utkface (your folder of UTKFace images, --data-path)")
    audit.add_argument("--data-path", type=Path, default=None,
                       help="fashion_mnist: folder of the IDX files; utkface: folder of "
                            "[age]_[gender]_[race]_[date&time].jpg images")
    audit.add_argument("--sensitive", nargs="+", default=None,
                       choices=["race", "sex", "gender", "age_bin"],
                       help="group column(s); several give intersectional groups. adult: race, "
                            "sex (default: race sex); utkface: race, gender, age_bin (default: "
                            "race). fashion_mnist and digits use the classes as groups")
    audit.add_argument("--target", default=None, choices=["race", "gender", "age_bin"],
                       help="utkface: the label (default race, the paper's setting)")
    audit.add_argument("--model", default=None, choices=["mlp", "cnn", "resnet18"],
                       help="default: resnet18 for utkface, mlp otherwise")
    audit.add_argument("--width", type=int_at_least(1), default=16,
                       help="ResNet18 width (default 16; 64 is the standard ResNet-18)")
    audit.add_argument("--image-size", type=int_at_least(4), default=32,
                       help="utkface: images resized to this size (default 32)")
    audit.add_argument("--rates", nargs="+", type=pruning_rate, default=None,
                       help="pruning rates in [0, 1) (default: adult 0.5 0.9 0.98, "
                            "fashion_mnist 0.5 0.7 0.8)")
    audit.add_argument("--method", default="global_magnitude", choices=PRUNING_METHODS)
    audit.add_argument("--epochs", type=int_at_least(1), default=None,
                       help="dense training epochs (default: adult 10, fashion_mnist 8)")
    audit.add_argument("--fine-tune-epochs", type=int_at_least(0), default=None,
                       help="epochs of fine-tuning after pruning, masks held (default 0: R(a) "
                            "is pruning's effect alone; with N > 0 a fine-tuned, unpruned "
                            "control is audited too)")
    audit.add_argument("--hidden", nargs="+", type=int_at_least(1), default=None,
                       help="hidden layer sizes of the MLP (default: adult 64 64, "
                            "fashion_mnist 128 64)")
    audit.add_argument("--lr", type=positive_float, default=None)
    audit.add_argument("--momentum", type=float, default=None)
    audit.add_argument("--batch-size", type=int_at_least(1), default=None)
    audit.add_argument("--n-train", type=int_at_least(1), default=None,
                       help="subsample the training set to this many rows "
                            "(default: fashion_mnist 10000)")
    audit.add_argument("--n-boot", type=int_at_least(1), default=1000,
                       help="bootstrap resamples of the test rows for the 95 %% intervals "
                            "(default 1000)")
    audit.add_argument("--seed", type=int_at_least(0), default=0)
    add_threads_argument(audit)
    audit.add_argument("--out", type=output_file((".csv", ".json")), default=None,
                       help="write the table to a .csv or .json file, and the figures "
                            "<name>_groups.png and <name>_accuracy_change.png beside it")
    audit.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    audit.set_defaults(handler=run_audit)
    return audit


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - convenience
    parser = argparse.ArgumentParser(prog="fairprune")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.handler(args)
    return 0
