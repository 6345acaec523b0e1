"""The audit's report in words: group labels as the user gave them, and column names that
say which model they describe."""

from __future__ import annotations

import numpy as np

from fairprune_sk.audit import audit_outputs


def test_the_verdict_names_integer_groups_as_integers():
    # group 7 keeps its predictions, group 4 loses them: a separation far beyond the noise
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    group = np.where(np.arange(400) < 200, 4, 7)
    dense = np.column_stack([1 - (0.1 + 0.8 * y), 0.1 + 0.8 * y])
    compressed = dense.copy()
    compressed[group == 4] = dense[group == 4][:, ::-1]
    audit = audit_outputs(y, dense, compressed, sensitive_features=group, n_boot=200,
                          random_state=0)
    verdict = " ".join(audit.verdict())
    assert "Significant: YES" in verdict
    assert "e.g. 4 [from " in verdict and "above 7 [up to " in verdict
    assert "4.0" not in verdict and "7.0" not in verdict
    report = audit.report()
    assert "acc compressed" in report and "acc pruned" not in report
    assert "after compression (pruning or quantization) minus before" in report
