"""The group-balanced Taylor criterion against magnitude pruning, at equal sparsity, no fine-tuning.

For every dataset and seed one dense net θ* is trained (``PrunableNetClassifier``, the
settings of ``bench_mitigation.py``: Fashion-MNIST MLP (128, 64), 20,000 training images,
8 epochs, batch 128, lr 0.01, momentum 0.9, classes as groups; Adult MLP (64, 64), 10 epochs,
batch 256, lr 0.05, momentum 0.9, race × sex groups). For every rate and method a
``copy.deepcopy`` of its ``module_`` is pruned directly with :mod:`fairprune_sk.pruning`,
and nothing is fine-tuned:

- ``global_magnitude``: one ranking of ``|w|`` across layers;
- ``fair_taylor``: ``prune_module(..., "fair_taylor", X=, y=, groups=)`` on the training rows
  (first-order, steps of 2 % of the remaining weights);
- with ``--ablations``: ``fair_taylor_o2`` (``order=2``: the Fisher term added),
  ``fair_taylor_s5`` (steps of 5 %), and ``pooled_taylor`` (the same criterion with every row
  in one group: what the max over groups adds);
- with ``--structured``: ``structured_l2`` against ``fair_taylor_structured`` at the unit rates
  ``--structured-rates`` (the fraction of output units of every layer but the last).

Every number comes from :class:`~fairprune_sk.ExcessRiskFrame` of the pruned module against
the dense one, on the test rows (and the training rows apart): max ψ (the largest excess
accuracy gap), overall accuracy, the worst group's accuracy. The report prints, per dataset,
rate and method, the mean over seeds ± the half-width of its 95 % t-interval
(:func:`fairprune_sk.benchmark.summary.seed_interval`), the criterion's wall time, and against
``global_magnitude`` on the same seeds the change of mean test max ψ and the accuracy change.
With ``--ceag`` every pruned module is also fine-tuned with CEAG
(``FairConstrainedNet(module, constraint_target="accuracy_gap")``, ``--fine-tune-epochs``).

Run (one torch thread)::

    python benchmarks/bench_fair_pruning.py --seeds 0 1 2 3 4
    python benchmarks/bench_fair_pruning.py --datasets fashion_mnist --seeds 0 1 2 --ablations
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from bench_mitigation import DEFAULT_HIDDEN, DEFAULT_TRAINING, mean_ci

from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
from fairprune_sk.metrics import group_codes
from fairprune_sk.models import MLP
from fairprune_sk.pruning import fair_taylor_prune, prune_module

DEFAULT_RATES = (0.9, 0.95, 0.99)
#: The nets and training of benchmarks/bench_mitigation.py (the same dense nets θ*).
NETS = {name: {"module__hidden_units": DEFAULT_HIDDEN[name], **DEFAULT_TRAINING[name]}
        for name in DEFAULT_HIDDEN}


def load(dataset: str, seed: int) -> dict[str, Any]:
    """Training and test rows, labels and sensitive features."""
    if dataset == "fashion_mnist":
        from fairprune_sk.datasets import load_fashion_mnist

        data = load_fashion_mnist(n_train=20_000, random_state=seed)
        flat = {part: data[f"X_{part}"].reshape(len(data[f"X_{part}"]), -1)
                for part in ("train", "test")}
        return {"X": flat["train"], "y": data["y_train"],
                "A": pd.Series(data["groups_train"], name="class"),
                "X_test": flat["test"], "y_test": data["y_test"],
                "A_test": pd.Series(data["groups_test"], name="class")}
    from fairprune_sk.datasets import load_dataset

    split = load_dataset("adult", sensitive=["race", "sex"], random_state=seed)
    return {"X": split.X_train.astype(np.float32), "y": split.y_train, "A": split.groups_train,
            "X_test": split.X_test.astype(np.float32), "y_test": split.y_test,
            "A_test": split.groups_test}


def methods(ablations: bool) -> dict[str, Any]:
    """``name -> f(module, rate, X, y, groups)`` pruning a module in place (unstructured)."""
    out = {
        "global_magnitude": lambda m, rate, X, y, g: prune_module(m, rate, "global_magnitude"),
        "fair_taylor": lambda m, rate, X, y, g: prune_module(
            m, rate, "fair_taylor", X=X, y=y, groups=g),
    }
    if ablations:
        out["fair_taylor_o2"] = lambda m, rate, X, y, g: fair_taylor_prune(
            m, rate, X, y, g, order=2)
        out["fair_taylor_s5"] = lambda m, rate, X, y, g: fair_taylor_prune(
            m, rate, X, y, g, step_fraction=0.05)
        out["pooled_taylor"] = lambda m, rate, X, y, g: fair_taylor_prune(
            m, rate, X, y, torch.zeros_like(g))
    return out


STRUCTURED = {
    "structured_l2": lambda m, rate, X, y, g: prune_module(m, rate, "structured_l2"),
    "fair_taylor_structured": lambda m, rate, X, y, g: prune_module(
        m, rate, "fair_taylor_structured", X=X, y=y, groups=g),
}


def audit(module, dense, X, y, A, classes) -> dict[str, float]:
    """Accuracy, max ψ and worst-group accuracy of ``module`` against ``dense``."""
    frame = ExcessRiskFrame(module, X, y, sensitive_features=A, reference=dense, classes=classes)
    return {"accuracy": float(frame.overall["accuracy_pruned"]),
            "max_psi": float(frame.max_excess_accuracy_gap),
            "worst_group_accuracy": float(frame.by_group["accuracy_pruned"].min())}


def ceag(module, classes, data, epochs: int, seed: int, training: dict[str, Any]) -> Any:
    """CEAG fine-tuning of a pruned module (its ``weight_orig`` is θ*)."""
    from fairprune_sk.constrained import FairConstrainedNet

    net = FairConstrainedNet(
        module, classes=classes, constraint_target="accuracy_gap", constraint_phase="after",
        max_epochs=epochs, lr=training["lr"], batch_size=training["batch_size"],
        optimizer__momentum=0.9, random_state=seed, verbose=0,
    ).initialize()
    net.fine_tune(data["X"], data["y"], epochs, sensitive_features=data["A"])
    return net


def run(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            data = load(dataset, seed)
            training = NETS[dataset]
            net = PrunableNetClassifier(MLP, **training, optimizer__momentum=0.9,
                                        random_state=seed, verbose=0)
            net.fit(data["X"], data["y"])
            dense, classes = net.module_, net.classes_
            X = torch.as_tensor(data["X"])
            y = torch.as_tensor(np.searchsorted(classes, data["y"]))
            groups = torch.as_tensor(group_codes(data["A"]).codes)
            runs = [(rate, name, prune) for rate in args.rates
                    for name, prune in methods(args.ablations).items()]
            if args.structured:
                runs += [(rate, name, prune) for rate in args.structured_rates
                         for name, prune in STRUCTURED.items()]
            for rate, name, prune in runs:
                module = copy.deepcopy(dense)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # emptied layers
                    prune(module, rate, X, y, groups)
                seconds = time.perf_counter() - start
                test = audit(module, dense, data["X_test"], data["y_test"], data["A_test"],
                             classes)
                train = audit(module, dense, data["X"], data["y"], data["A"], classes)
                row = {"dataset": dataset, "seed": seed, "rate": rate, "method": name,
                       "seconds": seconds, **{f"test_{k}": v for k, v in test.items()},
                       **{f"train_{k}": v for k, v in train.items()}}
                if args.ceag:
                    tuned = ceag(module, classes, data, args.fine_tune_epochs, seed,
                                 training)
                    after = audit(tuned, dense, data["X_test"], data["y_test"],
                                  data["A_test"], classes)
                    row.update({f"ceag_test_{k}": v for k, v in after.items()})
                rows.append(row)
                print(f"{dataset} seed {seed} rate {rate} {name:<22} test acc "
                      f"{test['accuracy']:.4f} max psi {test['max_psi']:.4f} worst "
                      f"{test['worst_group_accuracy']:.4f} | {seconds:.2f} s", flush=True)
    return pd.DataFrame(rows)


BASELINES = ("global_magnitude", "structured_l2")


def report(results: pd.DataFrame) -> None:
    columns = [c for c in results.columns if c.startswith(("test_", "train_", "ceag_"))]
    columns = [c for c in columns if not c.startswith("train_") or c == "train_max_psi"]
    for dataset, block in results.groupby("dataset", sort=False):
        n_seeds = block["seed"].nunique()
        print(f"\n{dataset}: mean ± 95 % t-interval half-width over {n_seeds} seeds, "
              "no fine-tuning")
        table = block.groupby(["rate", "method"], sort=False)[[*columns, "seconds"]].agg(mean_ci)
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(table.to_string())
        print("against global_magnitude / structured_l2 (same seed, same dense net)")
        for (rate, method), group in block.groupby(["rate", "method"], sort=False):
            if method in BASELINES:
                continue
            baseline = "structured_l2" if method in STRUCTURED else "global_magnitude"
            base = block[block["method"] == baseline].set_index(["rate", "seed"])
            paired = group.set_index(["rate", "seed"])
            ref = base.loc[paired.index]
            cut = 1 - paired["test_max_psi"].mean() / ref["test_max_psi"].mean()
            gain = paired["test_accuracy"].mean() - ref["test_accuracy"].mean()
            worst = paired["test_worst_group_accuracy"].mean() - \
                ref["test_worst_group_accuracy"].mean()
            difference = mean_ci(paired["test_max_psi"] - ref["test_max_psi"])
            print(f"  rate {rate} {method:<22} mean test max psi {100 * -cut:+.0f} % (paired "
                  f"difference {difference}), accuracy {100 * gain:+.2f} points, worst group "
                  f"{100 * worst:+.2f} points")
            if "ceag_test_max_psi" in paired:
                cut = 1 - paired["ceag_test_max_psi"].mean() / ref["ceag_test_max_psi"].mean()
                gain = paired["ceag_test_accuracy"].mean() - ref["ceag_test_accuracy"].mean()
                worst = paired["ceag_test_worst_group_accuracy"].mean() - \
                    ref["ceag_test_worst_group_accuracy"].mean()
                difference = mean_ci(paired["ceag_test_max_psi"] - ref["ceag_test_max_psi"])
                print(f"  {'':>9} {'+ CEAG':<22} mean test max psi {100 * -cut:+.0f} % (paired "
                      f"difference {difference}), accuracy {100 * gain:+.2f} points, worst group "
                      f"{100 * worst:+.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(NETS),
                        default=["fashion_mnist", "adult"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rates", nargs="*", type=float, default=list(DEFAULT_RATES),
                        help="unstructured rates (none: only --structured)")
    parser.add_argument("--ablations", action="store_true",
                        help="also order 2, steps of 5 %% and the pooled (one-group) criterion")
    parser.add_argument("--structured", action="store_true",
                        help="also structured_l2 against fair_taylor_structured")
    parser.add_argument("--structured-rates", nargs="+", type=float, default=[0.5, 0.75])
    parser.add_argument("--ceag", action="store_true",
                        help="also fine-tune every pruned module with CEAG")
    parser.add_argument("--fine-tune-epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", default=None, help="also write the per-seed rows here")
    parser.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                        help="print the report of earlier --csv files instead of running")
    args = parser.parse_args()
    if args.from_csv:
        report(pd.concat([pd.read_csv(path) for path in args.from_csv], ignore_index=True))
        return
    torch.set_num_threads(args.threads)
    results = run(args)
    if args.csv:
        results.to_csv(args.csv, index=False)
    report(results)


if __name__ == "__main__":
    main()
