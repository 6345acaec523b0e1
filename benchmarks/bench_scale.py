"""Fit, prune and audit on a large synthetic tabular set: peak memory and time per stage.

One process, one torch thread. Synthetic data: ``--n-rows`` x 20 float32 features, a binary
label from a noisy linear rule and 5 groups of unequal size (60/20/10/6/4 %). Stages, in order:

1. ``PrunableNetClassifier(MLP, module__hidden_units=(64, 64))`` fitted for ``--epochs``
   epochs at ``--batch-size`` (skorch's default 20 % validation split included);
2. ``net.prune(0.7)`` (global magnitude);
3. ``ExcessRiskFrame(net, X, y, sensitive_features=A)``;
4. the same with ``n_boot=--n-boot`` bootstrap resamples.

Peak RSS per stage is the kernel's high-water mark (``VmHWM``), reset before each stage
(``/proc/self/clear_refs``), so it is the stage's own peak; "above data" subtracts the RSS
held when the stage started. Memory bounded by batch and model means these stay a small
multiple of the data (per-sample outputs, group codes), far below ``n_samples x n_params``
floats, which is printed for scale.

    python benchmarks/bench_scale.py [--n-rows 1000000] [--n-boot 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
from fairprune_sk.models import MLP

MiB = 2**20


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Stages:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float]] = []

    def run(self, name: str, fn):
        resettable = reset_peak()
        start_rss = status_kib("VmRSS") * 1024
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        peak = status_kib("VmHWM") * 1024 if resettable else float("nan")
        self.rows.append((name, seconds, peak, peak - start_rss))
        print(f"{name:<40}{seconds:>9.1f} s{peak / MiB:>10.0f} MiB{(peak - start_rss) / MiB:>10.0f}"
              " MiB", flush=True)
        return out


def make_data(n_rows: int, n_features: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    w = rng.standard_normal(n_features).astype(np.float32)
    groups = rng.choice(5, size=n_rows, p=[0.6, 0.2, 0.1, 0.06, 0.04])
    shift = np.array([0.0, 0.5, -0.5, 1.0, -1.0], dtype=np.float32)[groups]
    score = X @ w + shift + rng.standard_normal(n_rows, dtype=np.float32) * 2.0
    y = (score > 0).astype(np.int64)
    A = np.array(["g0", "g1", "g2", "g3", "g4"], dtype=object)[groups]
    return X, y, A


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--n-boot", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)

    stages = Stages()
    print(f"{'stage':<40}{'time':>11}{'peak RSS':>14}{'above start':>14}")
    X, y, A = stages.run(f"make data ({args.n_rows} x 20)", lambda: make_data(args.n_rows))
    net = PrunableNetClassifier(
        MLP, module__hidden_units=(64, 64), criterion=nn.CrossEntropyLoss, max_epochs=args.epochs,
        batch_size=args.batch_size, lr=0.05, random_state=0, verbose=0,
    )
    stages.run(f"fit ({args.epochs} epoch, batch {args.batch_size})", lambda: net.fit(X, y))
    stages.run("prune(0.7)", lambda: net.prune(0.7))
    frame = stages.run("ExcessRiskFrame", lambda: ExcessRiskFrame(
        net, X, y, sensitive_features=A))
    frame_ci = stages.run(f"ExcessRiskFrame(n_boot={args.n_boot})", lambda: ExcessRiskFrame(
        net, X, y, sensitive_features=A, n_boot=args.n_boot, random_state=0))

    n_params = sum(p.numel() for p in net.module_.parameters())
    print(f"\ndata: X {X.nbytes / MiB:.0f} MiB; n_samples x n_params float32 would be "
          f"{args.n_rows * n_params * 4 / MiB:,.0f} MiB ({n_params} parameters)")
    print(f"whole run: peak RSS {max(r[2] for r in stages.rows) / MiB:.0f} MiB, "
          f"{sum(r[1] for r in stages.rows):.1f} s; sparsity {net.sparsity_:.3f}; "
          f"fairness_violation {frame.fairness_violation:.4f}")
    low, high = (q["excess_risk"] for q in frame_ci.difference_ci())
    print(f"excess_risk difference between groups (ξ's scale): 95 % interval [{low:.4f}, "
          f"{high:.4f}]")
    print(frame.by_group[["count", "accuracy_dense", "accuracy_pruned", "excess_risk"]])


if __name__ == "__main__":
    main()
