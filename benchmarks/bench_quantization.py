"""Quantization's disparate impact, measured, mitigated and timed, with intervals over seeds.

For every seed one dense net θ* is trained (the nets and training of ``bench_mitigation.py``:
Fashion-MNIST MLP (128, 64) on 20,000 training images, classes as groups; Adult MLP (64, 64),
race × sex groups). Then, against that θ*:

(a) **post-training quantization** (``net.quantized_copy(bits)``, symmetric weights per output
    channel, no fine-tuning) at each of ``--bits``: every group's R(a), ξ, max ψ_g, accuracy
    and worst-group accuracy, on test and training data apart. The disparity is called
    *significant* at a width when some pair of groups has a paired-by-seed t-interval of
    ``R(a) − R(a')`` that excludes 0 after a Bonferroni adjustment over all pairs (strict), and
    *weak* when only the 95 % t-intervals of two groups' R(a) do not overlap.
(b) **quantization-aware fine-tuning** at ``--qat-bits`` (2 and 3 by default) for the same
    ``--fine-tune-epochs``: ``plain`` (no constraint), ``ceag``
    (``constraint_target="accuracy_gap"``) and ``gap_and_loss`` (the recommended
    no-levelling-down setting), at their defaults; test max ψ_g with the worst-group accuracy
    beside it and the overall accuracy, and the paired-by-seed change against plain.
(c) **int8 export speed**: ``export_int8`` of an MLP 784-512-512-10 (its Linear layers on
    int8 kernels) against the float module, batch ``--batch-size`` rows of Fashion-MNIST, one
    torch thread, timed alternately ``--repeats`` times in one run; the ratio of the medians.

Every mean over seeds comes with the half-width of its 95 % t-interval (``mean ± h``); a
difference whose interval contains 0 is no effect.

Run (one process, one torch thread; seeds 0-9, 4 fine-tuning epochs, a few minutes)::

    python benchmarks/bench_quantization.py
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from bench_mitigation import (
    DEFAULT_HIDDEN,
    DEFAULT_TRAINING,
    METHODS,
    load,
    mean_ci,
    paired_difference,
)
from scipy import stats
from torch import nn

from fairprune_sk import ExcessRiskFrame
from fairprune_sk.constrained import FairConstrainedNet
from fairprune_sk.models import MLP
from fairprune_sk.quantization import export_int8, quantization_error

QAT_METHODS = ("plain", "ceag", "gap_and_loss")


def measure(net: Any, X: Any, y: Any, A: Any) -> dict[str, Any]:
    """Accuracy, ξ, max ψ_g, worst-group accuracy and every group's R(a) against θ*."""
    frame = ExcessRiskFrame(net, X, y, sensitive_features=A)
    by_group = frame.by_group
    label = {group: " & ".join(map(str, group)) if isinstance(group, tuple) else str(group)
             for group in by_group.index}
    return {
        "accuracy": float(frame.overall["accuracy_pruned"]),
        "xi": float(frame.fairness_violation),
        "max_psi": float(frame.max_excess_accuracy_gap),
        "worst_group_accuracy": float(by_group["accuracy_pruned"].min()),
        **{f"R[{label[g]}]": float(value) for g, value in by_group["excess_risk"].items()},
    }


def dense_net(dataset: str, seed: int, X: Any, y: Any, A: Any) -> FairConstrainedNet:
    net = FairConstrainedNet(MLP, module__hidden_units=DEFAULT_HIDDEN[dataset],
                             **DEFAULT_TRAINING[dataset], optimizer__momentum=0.9,
                             constraint_phase="none", random_state=seed, verbose=0)
    return net.fit(X, y, sensitive_features=A)


def run(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    ptq, qat = [], []
    for dataset, seed in itertools.product(args.datasets, args.seeds):
        X, y, A, X_test, y_test, A_test = load(dataset, seed, args.n_train)
        start = time.perf_counter()
        dense = dense_net(dataset, seed, X, y, A)
        print(f"{dataset} seed {seed}: dense test accuracy {dense.score(X_test, y_test):.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        for bits in args.bits:
            quantized = dense.quantized_copy(bits)
            row = {"dataset": dataset, "seed": seed, "bits": bits,
                   "distance": quantization_error(quantized.module_),
                   **{f"test_{k}": v for k, v in measure(quantized, X_test, y_test,
                                                         A_test).items()},
                   **{f"train_{k}": v for k, v in measure(quantized, X, y, A).items()}}
            ptq.append(row)
        for bits, method in itertools.product(args.qat_bits, QAT_METHODS):
            net = dense.quantized_copy(bits)
            net.set_params(max_epochs=args.fine_tune_epochs, **METHODS[method])
            start = time.perf_counter()
            net.partial_fit(X, y, sensitive_features=A)
            seconds = time.perf_counter() - start
            test = measure(net, X_test, y_test, A_test)
            qat.append({"dataset": dataset, "seed": seed, "bits": bits, "method": method,
                        "seconds": seconds, **{f"test_{k}": v for k, v in test.items()},
                        **{f"train_{k}": v for k, v in measure(net, X, y, A).items()}})
            print(f"  {bits} bits {method:<13} test acc {test['accuracy']:.4f} max psi "
                  f"{test['max_psi']:.4f} worst group {test['worst_group_accuracy']:.4f} "
                  f"({seconds:.0f} s)", flush=True)
    return pd.DataFrame(ptq), pd.DataFrame(qat)


def separated_pairs(rows: pd.DataFrame, split: str) -> tuple[int, int, int, str]:
    """Pairs of groups whose R(a) differ beyond the seed noise: ``(weak, strict, pairs, most
    separated)``. Weak: the 95 % t-intervals over seeds of the two R(a) do not overlap.
    Strict: the paired-by-seed t-interval of R(a) − R(a') excludes 0 after a Bonferroni
    adjustment over all pairs (the verdict's "significant")."""
    columns = [c for c in rows.columns if c.startswith(f"{split}_R[")]
    pairs = list(itertools.combinations(columns, 2))
    n = len(rows)
    if n < 2 or not pairs:
        return 0, 0, len(pairs), "-"
    t95 = stats.t.ppf(0.975, n - 1)
    strict_t = stats.t.ppf(1 - 0.05 / (2 * len(pairs)), n - 1)
    values = rows[columns].to_numpy(dtype=float)
    mean = values.mean(axis=0)
    half = t95 * values.std(axis=0, ddof=1) / np.sqrt(n)
    low, high = dict(zip(columns, mean - half, strict=True)), dict(zip(columns, mean + half,
                                                                        strict=True))
    weak = strict = 0
    best, best_t = "-", 0.0
    for a, b in pairs:
        weak += bool(low[a] > high[b] or low[b] > high[a])
        diff = (rows[a] - rows[b]).to_numpy(dtype=float)
        spread = diff.std(ddof=1) / np.sqrt(n)
        t = abs(diff.mean()) / spread if spread > 0 else 0.0
        if t > strict_t:
            strict += 1
            if t > best_t:
                higher, lower = (a, b) if diff.mean() > 0 else (b, a)
                best = f"{higher[len(split) + 3:-1]} > {lower[len(split) + 3:-1]}"
                best_t = t
    return weak, strict, len(pairs), best


def report_ptq(ptq: pd.DataFrame) -> None:
    print("\n(a) post-training quantization against θ* (no fine-tuning): mean ± 95 % t "
          "half-width over seeds")
    for dataset, part in ptq.groupby("dataset", sort=False):
        part = part.dropna(axis=1, how="all")  # the other dataset's groups
        n_seeds = part["seed"].nunique()
        print(f"\n{dataset} ({n_seeds} seeds)")
        rows = []
        for bits, at in part.groupby("bits", sort=False):
            row = {"bits": bits, "‖θ̂−θ*‖": mean_ci(at["distance"])}
            for split in ("test", "train"):
                for name in ("accuracy", "xi", "max_psi", "worst_group_accuracy"):
                    row[f"{split} {name}"] = mean_ci(at[f"{split}_{name}"])
                weak, strict, total, best = separated_pairs(at, split)
                row[f"{split} pairs weak/strict"] = f"{weak}/{strict} of {total}"
                if split == "test":
                    row["test most separated (strict)"] = best
            rows.append(row)
        with pd.option_context("display.width", 300, "display.max_columns", 30,
                               "display.max_colwidth", 40):
            print(pd.DataFrame(rows).to_string(index=False))
        columns = [c for c in part.columns if c.startswith("test_R[")]
        table = part.groupby("bits", sort=False)[columns].agg(mean_ci).T
        table.index = [c[len("test_R["):-1] for c in table.index]
        print(f"\n{dataset}: test R(a) per group, mean ± 95 % t half-width over seeds")
        with pd.option_context("display.width", 300, "display.max_columns", 30):
            print(table.to_string())


def paired(runs: pd.DataFrame, bits: int, method: str, baseline: str, column: str) -> str:
    """``method − baseline`` in ``column`` at ``bits`` (points, paired by seed), ± its 95 % t
    half-width, * when the interval excludes 0 (``bench_mitigation.paired_difference``)."""
    mean, half, separated = paired_difference(runs.rename(columns={"bits": "rate"}), bits,
                                              method, baseline, column)
    return f"{mean:+.1f}" if np.isnan(half) else f"{mean:+.1f} ± {half:.1f}{'*' * separated}"


def report_qat(qat: pd.DataFrame, ptq: pd.DataFrame) -> None:
    print("\n(b) quantization-aware fine-tuning: mean ± 95 % t half-width over seeds; change "
          "against plain in points, paired by seed (* where the interval excludes 0)")
    for dataset, part in qat.groupby("dataset", sort=False):
        part = part.dropna(axis=1, how="all")
        print(f"\n{dataset} ({part['seed'].nunique()} seeds)")
        before = ptq[ptq["dataset"] == dataset].assign(method="ptq")
        runs = pd.concat([part, before])  # PTQ: the quantized θ* before any fine-tuning
        rows = []
        for (bits, method), at in part.groupby(["bits", "method"], sort=False):
            row = {"bits": bits, "method": method}
            for name in ("max_psi", "worst_group_accuracy", "accuracy"):
                row[f"test {name}"] = mean_ci(at[f"test_{name}"])
            row["train max_psi"] = mean_ci(at["train_max_psi"])
            row["max_psi vs PTQ"] = row["max_psi vs plain"] = ""
            row["worst vs plain"] = row["acc vs plain"] = ""
            if method == "plain" and bits in set(before["bits"]):
                row["max_psi vs PTQ"] = paired(runs, bits, "plain", "ptq", "test_max_psi")
            elif method != "plain":
                row["max_psi vs plain"] = paired(runs, bits, method, "plain", "test_max_psi")
                row["worst vs plain"] = paired(runs, bits, method, "plain",
                                               "test_worst_group_accuracy")
                row["acc vs plain"] = paired(runs, bits, method, "plain", "test_accuracy")
            row["seconds"] = f"{at['seconds'].mean():.1f}"
            rows.append(row)
        with pd.option_context("display.width", 300, "display.max_columns", 30,
                               "display.max_colwidth", 40):
            print(pd.DataFrame(rows).to_string(index=False))


def export_speed(args: argparse.Namespace) -> None:
    """Float against ``export_int8`` forward passes, timed alternately, one torch thread."""
    from fairprune_sk.datasets import load_fashion_mnist

    data = load_fashion_mnist(n_train=2000, random_state=0)
    X = torch.as_tensor(data.X_test.reshape(len(data.X_test), -1)[: args.batch_size],
                        dtype=torch.float32)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                           nn.Linear(512, 10)).eval()
    fast = export_int8(module)
    times: dict[str, list[float]] = {"float": [], "int8": []}
    with torch.inference_mode():
        for model in (module, fast):  # warm-up
            model(X)
        for _ in range(args.repeats):
            for name, model in (("float", module), ("int8", fast)):
                start = time.perf_counter()
                for _ in range(args.calls):
                    model(X)
                times[name].append((time.perf_counter() - start) / args.calls)
        agree = float((module(X).argmax(1) == fast(X).argmax(1)).float().mean())
    float_ms, int8_ms = (1000 * statistics.median(times[k]) for k in ("float", "int8"))
    print(f"\n(c) int8 export, MLP 784-512-512-10, batch {len(X)}, one torch thread, "
          f"{args.repeats} alternating repeats of {args.calls} calls: float {float_ms:.2f} ms, "
          f"int8 {int8_ms:.2f} ms per batch, speed-up float/int8 = {float_ms / int8_ms:.2f}x "
          f"(run-to-run range of the ratio {min(times['float']) / max(times['int8']):.2f}-"
          f"{max(times['float']) / min(times['int8']):.2f}); predictions agree on "
          f"{100 * agree:.1f} % of the rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DEFAULT_HIDDEN),
                        default=["fashion_mnist", "adult"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--n-train", type=int, default=20_000,
                        help="Fashion-MNIST training images (default 20,000)")
    parser.add_argument("--bits", nargs="+", type=int, default=[8, 4, 3, 2])
    parser.add_argument("--qat-bits", nargs="*", type=int, default=[3, 2])
    parser.add_argument("--fine-tune-epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--csv", default=None,
                        help="write the runs to <csv>_ptq.csv and <csv>_qat.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    ptq, qat = run(args)
    if args.csv:
        ptq.to_csv(f"{args.csv}_ptq.csv", index=False)
        qat.to_csv(f"{args.csv}_qat.csv", index=False)
    report_ptq(ptq)
    if len(qat):
        report_qat(qat, ptq)
    if not args.no_speed:
        export_speed(args)
    print(f"\ndone in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
