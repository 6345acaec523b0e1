"""Plain pruning vs the mitigations of ``FairConstrainedNet``, at equal fine-tuning budgets.

For every seed one dense net θ* is trained (``FairConstrainedNet`` with
``constraint_phase="none"``, i.e. plain training); for every pruning rate and method a copy of
it is pruned (global magnitude) and fine-tuned for the same ``--fine-tune-epochs``:

- ``plain``: no constraint (``constraint_phase="none"``);
- ``ceag``: ``constraint_target="accuracy_gap"`` at its defaults: duals measured on the
  training batches (replay buffer, one-standard-error noise margin), the weights averaged over
  the last quarter of fine-tuning (``average_tail=0.25``);
- ``ceag_heldout``: the same with ``constraint_split=0.2``: duals measured on a held-out,
  group × label stratified 20 % (the primal steps train on the rest) and the best held-out
  iterate kept (``best_iterate=True``; the tail average is one more candidate);
- ``fair_after``: the paper's equal group losses while fine-tuning (*Fair Aft*);
- ``gap_and_loss``: CEAG plus one-sided equal-loss constraints, at its defaults;
- ``gradient_norm``: the paper's eq. (6), equal group gradient norms (double backward).

``--set name=value`` overrides a parameter of every method but plain; ``--variant
label:name=value,name=value`` adds a CEAG method with those parameters (the grid of
docs/mitigation.md, e.g. ``--variant lr0.1:dual_lr=0.1``). Every number comes from
:class:`~fairprune_sk.ExcessRiskFrame` of the fine-tuned net against θ*:
ψ_g = (acc_dense_g − acc_pruned_g) − (acc_dense − acc_pruned), max over groups; ξ; the worst
group's accuracy. The script prints, per rate and method, the mean over seeds and the 95 %
t-interval (``scipy.stats.t``) on test data, the training numbers apart, the change of mean test
max ψ against plain, the accuracy cost, the worst seed's accuracy gap to plain (paired by seed)
and the pruning + fine-tuning wall time, then every group's mean test accuracy beside plain's
(who pays) and the worst-off group's accuracy paired by seed against plain and Fair Aft, with
t-intervals. ``--from-csv`` reprints the report of saved runs.

Run (one process, one torch thread)::

    python benchmarks/bench_mitigation.py --dataset fashion_mnist --seeds 0 1 2 3 4
    python benchmarks/bench_mitigation.py --dataset adult --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from fairprune_sk import ExcessRiskFrame
from fairprune_sk.benchmark.summary import seed_interval
from fairprune_sk.constrained import FairConstrainedNet
from fairprune_sk.diagnostics import group_gradient_norms
from fairprune_sk.models import MLP

METHODS = {
    "plain": {"constraint_phase": "none"},
    "ceag": {"constraint_phase": "after", "constraint_target": "accuracy_gap"},
    "ceag_heldout": {
        "constraint_phase": "after",
        "constraint_target": "accuracy_gap",
        "constraint_split": 0.2,
    },
    "fair_after": {"constraint_phase": "after", "constraint_target": "group_loss"},
    "gap_and_loss": {"constraint_phase": "after", "constraint_target": "gap_and_loss"},
    "gradient_norm": {"constraint_phase": "after", "constraint_target": "gradient_norm"},
}
DEFAULT_RATES = {"fashion_mnist": (0.95, 0.97, 0.99), "adult": (0.9, 0.98, 0.99)}
DEFAULT_HIDDEN = {"fashion_mnist": (128, 64), "adult": (64, 64)}
#: The benchmark's training settings (fairprune_sk/benchmark/sweep.py), SGD with momentum 0.9.
DEFAULT_TRAINING = {
    "fashion_mnist": {"max_epochs": 8, "batch_size": 128, "lr": 0.01},
    "adult": {"max_epochs": 10, "batch_size": 256, "lr": 0.05},
}


def load(dataset: str, seed: int, n_train: int) -> tuple[Any, ...]:
    """Training and test arrays with their groups (classes for Fashion-MNIST, race × sex)."""
    if dataset == "adult":
        from fairprune_sk.datasets import load_dataset

        split = load_dataset("adult", sensitive=("race", "sex"))
        return (split.X_train, split.y_train, split.groups_train, split.X_test, split.y_test,
                split.groups_test)
    from fairprune_sk.datasets import load_fashion_mnist

    data = load_fashion_mnist(n_train=n_train, random_state=seed)
    X_train = data.X_train.reshape(len(data.X_train), -1)
    X_test = data.X_test.reshape(len(data.X_test), -1)
    return (X_train, data.y_train, pd.Series(data.groups_train, name="class"), X_test,
            data.y_test, pd.Series(data.groups_test, name="class"))


def audit(net: FairConstrainedNet, X: Any, y: Any, A: Any, *,
          gradient_norms: bool = False) -> dict[str, float]:
    """Accuracy, max ψ, ξ and worst-group accuracy of a pruned net against its θ*; with
    ``gradient_norms``, also the spread (max − min over groups) of the group gradient norms
    ``‖g_a‖`` at the fine-tuned weights, the quantity eq. (6) equalises."""
    frame = ExcessRiskFrame(net, X, y, sensitive_features=A)
    spread = {}
    if gradient_norms:
        codes = pd.factorize(pd.Series(A), sort=True)[0]
        norms = group_gradient_norms(net.module_, X, np.searchsorted(net.classes_, y), codes)
        spread = {"gradient_norm_spread": float(np.nanmax(norms) - np.nanmin(norms))}
    by_group, overall = frame.by_group, frame.overall
    drop = by_group["accuracy_dense"] - by_group["accuracy_pruned"]
    overall_drop = overall["accuracy_dense"] - overall["accuracy_pruned"]
    groups = {f"group_accuracy[{label}]": float(value)
              for label, value in by_group["accuracy_pruned"].items()}
    return {
        "accuracy": float(overall["accuracy_pruned"]),
        "max_psi": float((drop - overall_drop).max()),
        "xi": float(frame.fairness_violation),
        "worst_group_accuracy": float(by_group["accuracy_pruned"].min()),
        **spread,
        **groups,
    }


def parse_value(text: str) -> Any:
    """``"0.2"`` → 0.2, ``"20"`` → 20, ``"None"`` / ``"True"`` / ``"False"`` → the constant."""
    constants = {"None": None, "True": True, "False": False}
    if text in constants:
        return constants[text]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def mean_half_width(values: Any) -> tuple[float, float]:
    """Mean over seeds and the half-width of its 95 % t-interval (the benchmark's
    seed_interval); NaN half-width for a single seed."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan")
    _, high = seed_interval(mean, values.std(ddof=1), len(values))
    return mean, float(high) - mean


def mean_ci(values: pd.Series) -> str:
    """Mean over seeds ± the half-width of its 95 % t-interval, as text."""
    mean, half = mean_half_width(values)
    return f"{mean:.3f}" if np.isnan(half) else f"{mean:.3f} ± {half:.3f}"


def run(args: argparse.Namespace) -> pd.DataFrame:
    overrides = dict(item.split("=", 1) for item in args.set)
    overrides = {key: parse_value(value) for key, value in overrides.items()}
    training = {key: value for key, value in
                (("max_epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size))
                if value is not None}
    methods = {name: METHODS[name] for name in args.methods}
    for variant in args.variant:
        label, _, spec = variant.partition(":")
        params = dict(item.split("=", 1) for item in spec.split(",") if item)
        methods[label] = {**METHODS["ceag"],
                          **{key: parse_value(value) for key, value in params.items()}}
    rows = []
    for seed in args.seeds:
        X, y, A, X_test, y_test, A_test = load(args.dataset, seed, args.n_train)
        dense = FairConstrainedNet(
            MLP, module__hidden_units=tuple(args.hidden or DEFAULT_HIDDEN[args.dataset]),
            **{**DEFAULT_TRAINING[args.dataset], **training}, optimizer__momentum=args.momentum,
            constraint_phase="none", random_state=seed, verbose=0,
        )
        start = time.perf_counter()
        dense.fit(X, y, sensitive_features=A)
        dense_seconds = time.perf_counter() - start
        for rate in args.rates or DEFAULT_RATES[args.dataset]:
            for method, params in methods.items():
                params = dict(params)
                if method != "plain":
                    params.update(overrides)
                net = copy.deepcopy(dense)
                net.set_params(max_epochs=args.fine_tune_epochs, **params)
                start = time.perf_counter()
                net.prune(rate)
                net.partial_fit(X, y, sensitive_features=A)
                seconds = time.perf_counter() - start
                norms = {"gradient_norms": args.gradient_norms}
                test = audit(net, X_test, y_test, A_test, **norms)
                train = audit(net, X, y, A, **norms)
                row = {"seed": seed, "rate": rate, "method": method, "seconds": seconds,
                       "dense_seconds": dense_seconds,
                       **{f"test_{k}": v for k, v in test.items()},
                       **{f"train_{k}": v for k, v in train.items()},
                       "max_multiplier": float(net.multipliers_.max())}
                rows.append(row)
                print(f"seed {seed} rate {rate} {method:<16} test acc {test['accuracy']:.4f} "
                      f"max psi {test['max_psi']:.4f} xi {test['xi']:.3f} | train acc "
                      f"{train['accuracy']:.4f} max psi {train['max_psi']:.4f} | "
                      f"max lambda {row['max_multiplier']:.3f} | {seconds:.1f} s", flush=True)
    return pd.DataFrame(rows)


def report(results: pd.DataFrame) -> None:
    columns = ["test_accuracy", "test_max_psi", "test_xi", "test_worst_group_accuracy",
               "train_accuracy", "train_max_psi", "train_xi", "seconds"]
    columns += [c for c in ("train_gradient_norm_spread", "test_gradient_norm_spread")
                if c in results.columns]
    n_seeds = results["seed"].nunique()
    print(f"\nmean ± 95 % t-interval half-width over {n_seeds} seeds")
    table = results.groupby(["rate", "method"], sort=False)[columns].agg(mean_ci)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.to_string())
    if "plain" not in set(results["method"]):
        return
    print("\nagainst plain (same seed, same dense net, same fine-tuning epochs)")
    plain = results[results["method"] == "plain"].set_index(["rate", "seed"])
    for (rate, method), group in results.groupby(["rate", "method"], sort=False):
        if method == "plain":
            continue
        paired = group.set_index(["rate", "seed"])
        base = plain.loc[paired.index]
        cut = 1 - paired["test_max_psi"].mean() / base["test_max_psi"].mean()
        cost = base["test_accuracy"].mean() - paired["test_accuracy"].mean()
        worst = (base["test_accuracy"] - paired["test_accuracy"]).max()
        print(f"  rate {rate} {method:<16} mean test max psi cut {100 * cut:+.0f} %, "
              f"accuracy cost {100 * cost:+.2f} points, worst seed {100 * worst:+.2f} points")
    groups = [c for c in results.columns if c.startswith("test_group_accuracy[")]
    if not groups:
        return
    print("\nmean test accuracy of every group, and its change against plain (points; * where "
          "the paired 95 % t-interval over seeds excludes 0)")
    means = results.groupby(["rate", "method"], sort=False)[groups].mean()
    for rate in means.index.get_level_values("rate").unique():
        base = means.loc[(rate, "plain")]
        for method in means.loc[rate].index:
            row = means.loc[(rate, method)]
            change = 100 * (row - base)
            separated = {name: paired_difference(results, rate, method, "plain", name)[2]
                         for name in groups} if method != "plain" else {}
            cells = "  ".join(
                f"{name[len('test_group_accuracy['):-1]}: {row[name]:.3f}"
                + ("" if method == "plain"
                   else f" ({change[name]:+.1f}{'*' if separated[name] else ''})")
                for name in groups
            )
            loss = "" if method == "plain" else (
                f" | largest group loss {-change.min():.1f}, mean of losses "
                f"{-change[change < 0].sum() / len(groups):.2f} points")
            print(f"  rate {rate} {method:<16} {cells}{loss}")
    report_worst_off(results, means, groups)


def paired_difference(results: pd.DataFrame, rate: float, method: str, baseline: str,
                      column: str) -> tuple[float, float, bool]:
    """Mean over seeds of ``method − baseline`` in ``column`` (points, paired by seed), the
    half-width of its 95 % t-interval, and whether that interval excludes 0."""
    at_rate = results[results["rate"] == rate]
    ours = at_rate[at_rate["method"] == method].set_index("seed")[column]
    theirs = at_rate[at_rate["method"] == baseline].set_index("seed")[column]
    mean, half_width = mean_half_width(100 * (ours - theirs.reindex(ours.index)).dropna())
    return mean, half_width, bool(abs(mean) > half_width)  # False when NaN (one seed)


def report_worst_off(results: pd.DataFrame, means: pd.DataFrame, groups: list[str]) -> None:
    """The worst-off group's accuracy, paired by seed against plain and Fair Aft.

    Two readings of "worst-off": the group with the lowest mean test accuracy under plain
    (one fixed group), and the lowest group accuracy of each run (``test_worst_group_accuracy``,
    whichever group that is)."""
    baselines = [name for name in ("plain", "fair_after") if name in set(results["method"])]
    print("\nworst-off group, paired by seed (points, mean ± 95 % t half-width; * where the "
          "interval excludes 0)")
    for rate in means.index.get_level_values("rate").unique():
        worst = means.loc[(rate, "plain")].idxmin()
        label = worst[len("test_group_accuracy["):-1]
        for method in means.loc[rate].index:
            if method in baselines[:1]:
                continue
            cells = []
            for column, what in ((worst, label), ("test_worst_group_accuracy", "per-run min")):
                for baseline in baselines:
                    if baseline == method:
                        continue
                    mean, half, separated = paired_difference(results, rate, method, baseline,
                                                              column)
                    cells.append(f"{what} vs {baseline} {mean:+.1f} ± {half:.1f}"
                                 f"{'*' if separated else ' '}")
            print(f"  rate {rate} {method:<16} " + "   ".join(cells))


def plot_trade_off(results: pd.DataFrame, path: str) -> None:
    """Worst-group test accuracy against test max ψ, one panel per rate, one point per method
    (mean over seeds, 95 % t-intervals both ways): up and to the left is better on both."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rates = list(dict.fromkeys(results["rate"]))
    figure = Figure(figsize=(5.2 * len(rates), 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(rates), squeeze=False)[0]
    methods = list(dict.fromkeys(results["method"]))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, rate in zip(axes, rates, strict=True):
        for method in methods:
            rows = results[(results["rate"] == rate) & (results["method"] == method)]
            if rows.empty:
                continue
            (x, dx), (y, dy) = (np.nan_to_num(mean_half_width(100 * rows[column]))
                                for column in ("test_max_psi", "test_worst_group_accuracy"))
            ax.errorbar(x, y, xerr=dx, yerr=dy, fmt="o", color=colors[method], capsize=3,
                        markersize=6, label=method)
            ax.annotate(method, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8,
                        color=colors[method])
        ax.set_title(f"pruning rate {rate:g}")
        ax.set_xlabel("test max ψ_g (points of accuracy)")
        ax.set_ylabel("worst-group test accuracy (%), lowest group of each run")
        ax.grid(alpha=0.3)
        ax.text(0.98, 0.98, "better: up and left", transform=ax.transAxes, ha="right",
                va="top", fontsize="small", color="0.35")
    n_seeds = results["seed"].nunique()
    figure.suptitle("Disparity against the worst-off group, after fine-tuning: mean over "
                    f"{n_seeds} seeds, 95 % t-intervals\n(intervals of each method alone; the "
                    "report prints the paired differences, which are narrower)")
    figure.savefig(path, dpi=120)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DEFAULT_RATES), default="fashion_mnist")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="default 0-4; with --from-csv: keep only these seeds")
    parser.add_argument("--rates", nargs="+", type=float, default=None)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--variant", nargs="*", default=[], metavar="LABEL:NAME=VALUE,...",
                        help="an extra CEAG method with these parameters")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="override a FairConstrainedNet parameter of the CEAG methods")
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--hidden", nargs="+", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="dense epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gradient-norms", action="store_true",
                        help="also record the spread (max - min) of the group gradient norms")
    parser.add_argument("--figure", default=None, metavar="PNG",
                        help="also draw worst-group accuracy against max psi here")
    parser.add_argument("--csv", default=None, help="also write the per-seed rows here")
    parser.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                        help="print the report of earlier --csv files (merged) instead of running")
    args = parser.parse_args()
    if args.from_csv:
        results = pd.concat([pd.read_csv(path) for path in args.from_csv], ignore_index=True)
        # a method run in several files (plain, beside each file's variants) is reported once
        results = results.drop_duplicates(["seed", "rate", "method"])
        if args.seeds is not None:
            results = results[results["seed"].isin(args.seeds)]
        if args.rates is not None:
            results = results[results["rate"].isin(args.rates)]
        report(results.sort_values(["rate", "seed"], kind="stable"))
        if args.figure:
            plot_trade_off(results, args.figure)
        return
    args.seeds = [0, 1, 2, 3, 4] if args.seeds is None else args.seeds
    torch.set_num_threads(args.threads)
    results = run(args)
    if args.csv:
        results.to_csv(args.csv, index=False)
    report(results)
    if args.figure:
        plot_trade_off(results, args.figure)


if __name__ == "__main__":
    main()
