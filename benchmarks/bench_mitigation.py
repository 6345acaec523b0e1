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
(who pays). ``--from-csv`` reprints the report of saved runs.

Run (one process, one torch thread)::

    python benchmarks/bench_mitigation.py --dataset fashion_mnist --seeds 0 1 2 3 4
    python benchmarks/bench_mitigation.py --dataset adult --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import pandas as pd
import torch

from fairprune_sk import ExcessRiskFrame
from fairprune_sk.benchmark.summary import seed_interval
from fairprune_sk.constrained import FairConstrainedNet
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


def audit(net: FairConstrainedNet, X: Any, y: Any, A: Any) -> dict[str, float]:
    """Accuracy, max ψ, ξ and worst-group accuracy of a pruned net against its θ*."""
    frame = ExcessRiskFrame(net, X, y, sensitive_features=A)
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


def mean_ci(values: pd.Series) -> str:
    """Mean over seeds ± the half-width of its 95 % t-interval (the benchmark's seed_interval)."""
    values = values.to_numpy(dtype=float)
    mean = values.mean()
    if len(values) < 2:
        return f"{mean:.3f}"
    _, high = seed_interval(mean, values.std(ddof=1), len(values))
    return f"{mean:.3f} ± {float(high) - mean:.3f}"


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
                test, train = audit(net, X_test, y_test, A_test), audit(net, X, y, A)
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
    print("\nmean test accuracy of every group, and its change against plain (points)")
    means = results.groupby(["rate", "method"], sort=False)[groups].mean()
    for rate in means.index.get_level_values("rate").unique():
        base = means.loc[(rate, "plain")]
        for method in means.loc[rate].index:
            row = means.loc[(rate, method)]
            change = 100 * (row - base)
            cells = "  ".join(
                f"{name[len('test_group_accuracy['):-1]}: {row[name]:.3f}"
                + ("" if method == "plain" else f" ({change[name]:+.1f})")
                for name in groups
            )
            loss = "" if method == "plain" else (
                f" | largest group loss {-change.min():.1f}, mean of losses "
                f"{-change[change < 0].sum() / len(groups):.2f} points")
            print(f"  rate {rate} {method:<16} {cells}{loss}")


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
    parser.add_argument("--csv", default=None, help="also write the per-seed rows here")
    parser.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                        help="print the report of earlier --csv files (merged) instead of running")
    args = parser.parse_args()
    if args.from_csv:
        results = pd.concat([pd.read_csv(path) for path in args.from_csv], ignore_index=True)
        if args.seeds is not None:
            results = results[results["seed"].isin(args.seeds)]
        if args.rates is not None:
            results = results[results["rate"].isin(args.rates)]
        report(results.sort_values(["rate", "seed"], kind="stable"))
        return
    args.seeds = [0, 1, 2, 3, 4] if args.seeds is None else args.seeds
    torch.set_num_threads(args.threads)
    results = run(args)
    if args.csv:
        results.to_csv(args.csv, index=False)
    report(results)


if __name__ == "__main__":
    main()
