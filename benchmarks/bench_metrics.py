"""ExcessRiskFrame aggregation vs fairlearn's MetricFrame on the same per-sample data.

Run: ``python benchmarks/bench_metrics.py [--n-samples 1000000] [--n-groups 5]``. Prints both
times and their ratio, measured side by side in one run, and checks both give the same ξ.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


class _Fixed:
    """A 'classifier' returning precomputed probabilities, so only aggregation is timed."""

    def __init__(self, proba: np.ndarray) -> None:
        self.proba, self.classes_ = proba, np.arange(proba.shape[1])

    def predict_proba(self, X):
        return self.proba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--n-groups", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from fairprune_sk import ExcessRiskFrame

    rng = np.random.default_rng(0)
    n = args.n_samples
    dense = rng.dirichlet([2, 2], n)
    pruned = np.clip(dense + rng.normal(0, 0.05, (n, 1)) * [1, -1], 0.01, 0.99)
    y = rng.integers(0, 2, n)
    groups = rng.choice([f"g{i}" for i in range(args.n_groups)], n)
    X = np.empty((n, 0))

    ours, theirs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        frame = ExcessRiskFrame(_Fixed(pruned), X, y, sensitive_features=groups,
                                reference=_Fixed(dense))
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        metric_frame = frame.metric_frame  # fairlearn builds its per-row grouping here
        theirs.append(time.perf_counter() - start)
        frame._metric_frame = None
    xi_ours = frame.fairness_violation
    xi_fairlearn = float(metric_frame.difference()["excess_risk"])
    print(f"{n:,} samples, {args.n_groups} groups, best of {args.repeats}")
    print(f"  ExcessRiskFrame (bincount)        {min(ours):8.3f} s")
    print(f"  fairlearn MetricFrame (same data) {min(theirs):8.3f} s")
    print(f"  ratio MetricFrame / ExcessRiskFrame = {min(theirs) / min(ours):.1f}x")
    print(f"  xi: ours {xi_ours:.6f}, fairlearn {xi_fairlearn:.6f}")


if __name__ == "__main__":
    main()
