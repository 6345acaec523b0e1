"""Excess risk (eq. 2), ξ (eq. 3) and ExcessRiskFrame against brute-force recomputation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame

from fairprune_sk import ExcessRiskFrame, accuracy_gap, excess_risk, fairness_violation
from fairprune_sk.metrics import excess_accuracy_gap, group_codes, worst_group_accuracy


def _brute_force(y, proba_pruned, proba_dense, groups, labels):
    """Per-group excess risk with plain Python loops, independent of the library."""
    out = {}
    for g in sorted(set(groups)):
        rows = [i for i in range(len(y)) if groups[i] == g]
        dense = pruned = 0.0
        for i in rows:
            k = list(labels).index(y[i])
            dense += -np.log(max(proba_dense[i][k], 1e-12))
            pruned += -np.log(max(proba_pruned[i][k], 1e-12))
        out[g] = (pruned - dense) / len(rows)
    return out


def _random_proba(rng, n, k):
    p = rng.random((n, k)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


def test_excess_risk_and_xi_match_brute_force():
    rng = np.random.default_rng(1)
    n, labels = 300, np.array(["cat", "dog", "eel"])
    y = rng.choice(labels, n)
    groups = rng.choice(["x", "y", "z", "w"], n, p=[0.5, 0.3, 0.15, 0.05])
    dense, pruned = _random_proba(rng, n, 3), _random_proba(rng, n, 3)
    expected = _brute_force(y, pruned, dense, groups, labels)
    got = excess_risk(y, pruned, dense, sensitive_features=groups, labels=labels)
    for g, value in expected.items():
        assert got[g] == pytest.approx(value, rel=1e-12, abs=1e-12)
    xi = fairness_violation(y, pruned, dense, sensitive_features=groups, labels=labels)
    pairwise = max(abs(a - b) for a in expected.values() for b in expected.values())
    assert xi == pytest.approx(pairwise, rel=1e-12)


def test_accuracy_gap_is_max_minus_min_group_accuracy():
    y = np.array([0, 1, 1, 0, 1, 0])
    pred = np.array([0, 1, 0, 0, 0, 1])
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    # group a: 2/3 correct, group b: 1/3 correct
    assert accuracy_gap(y, pred, sensitive_features=groups) == pytest.approx(1 / 3)


def test_intersectional_groups_are_a_multiindex():
    frame = pd.DataFrame({"race": ["w", "b", "w", "b"], "sex": ["m", "m", "f", "f"]})
    groups = group_codes(frame)
    assert isinstance(groups.index, pd.MultiIndex)
    assert groups.n_groups == 4
    assert list(groups.index.names) == ["race", "sex"]


def test_wrong_length_names_both_lengths():
    with pytest.raises(ValueError, match="sensitive_features has 3 rows but X and y have 4"):
        group_codes(["a", "b", "c"], 4)


@pytest.mark.parametrize(
    ("function", "args", "name"),
    [
        (accuracy_gap, ([0, 1, 1],), "y_pred"),
        (worst_group_accuracy, ([0, 1, 1],), "y_pred"),
        (excess_accuracy_gap, ([0, 1, 1], [0, 1, 1, 0]), "y_pred_pruned"),
        (excess_accuracy_gap, ([0, 1, 1, 0], [0, 1, 1]), "y_pred_dense"),
    ],
)
def test_prediction_length_errors_name_the_argument(function, args, name):
    with pytest.raises(ValueError, match=f"^{name} has 3 samples but y_true has 4$"):
        function([0, 1, 1, 0], *args, sensitive_features=["a", "a", "b", "b"])


def test_missing_group_labels_are_rejected():
    with pytest.raises(ValueError, match="missing values"):
        group_codes(pd.Series(["a", None, "b"]))


def test_unknown_labels_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"y contains labels that are not in labels: \['z'\]"):
        excess_risk(
            ["a", "z"],
            _random_proba(rng, 2, 2),
            _random_proba(rng, 2, 2),
            sensitive_features=[0, 1],
            labels=["a", "b"],
        )


def test_frame_with_explicit_reference_matches_brute_force(two_models):
    X, y, group, dense, pruned = two_models
    frame = ExcessRiskFrame(pruned, X, y, sensitive_features=group, reference=dense)
    expected = _brute_force(
        y, pruned.predict_proba(X), dense.predict_proba(X), list(group), dense.classes_
    )
    for g, value in expected.items():
        assert frame.by_group.loc[g, "excess_risk"] == pytest.approx(value, rel=1e-10)
    counts = group.value_counts()
    assert frame.by_group["count"].to_dict() == counts.to_dict()
    acc_dense = dense.predict(X) == y
    assert frame.overall["accuracy_dense"] == pytest.approx(acc_dense.mean())
    for g in counts.index:
        mask = (group == g).to_numpy()
        assert frame.by_group.loc[g, "accuracy_dense"] == pytest.approx(acc_dense[mask].mean())
    assert frame.fairness_violation == pytest.approx(
        max(expected.values()) - min(expected.values())
    )


def test_frame_speaks_metricframe(two_models):
    X, y, group, dense, pruned = two_models
    frame = ExcessRiskFrame(pruned, X, y, sensitive_features=group, reference=dense)
    mf = frame.metric_frame
    assert isinstance(mf, MetricFrame)
    pd.testing.assert_frame_equal(
        mf.by_group.astype(float),
        frame.by_group.drop(columns="excess_accuracy_gap").astype(float),
        check_names=False,
        rtol=1e-10,
    )
    assert mf.difference()["excess_risk"] == pytest.approx(frame.fairness_violation, rel=1e-10)
    assert frame.group_max()["excess_risk"] == pytest.approx(mf.group_max()["excess_risk"])
    assert frame.group_min()["loss_pruned"] == pytest.approx(mf.group_min()["loss_pruned"])
    to_overall = frame.difference(method="to_overall")
    assert to_overall["excess_risk"] == pytest.approx(
        mf.difference(method="to_overall")["excess_risk"], rel=1e-10
    )
    with pytest.raises(ValueError, match="'method' parameter of ExcessRiskFrame.difference must"):
        frame.difference(method="nope")


def test_frame_requires_reference_for_plain_estimators(two_models):
    X, y, group, dense, _ = two_models
    with pytest.raises(ValueError, match="keeps no dense reference"):
        ExcessRiskFrame(dense, X, y, sensitive_features=group)


def test_frame_rejects_mismatched_lengths(two_models):
    X, y, group, dense, pruned = two_models
    with pytest.raises(ValueError, match="sensitive_features has 10 rows"):
        ExcessRiskFrame(pruned, X, y, sensitive_features=group[:10], reference=dense)
