"""Probabilities reaching the audit are checked as sklearn's ``log_loss`` checks them."""

from __future__ import annotations

import numpy as np
import pytest

from fairprune_sk import ExcessRiskFrame, excess_risk

CLASSES = np.array(["a", "b", "c"])


def _proba(rng, n, k=3):
    p = rng.random((n, k)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture
def outputs():
    rng = np.random.default_rng(3)
    n = 40
    y = rng.choice(CLASSES, n)
    groups = rng.choice(["x", "y"], n)
    return y, groups, _proba(rng, n), _proba(rng, n)


def _bad(good, kind):
    bad = good.copy()
    if kind == "nan":
        bad[5, 1] = np.nan
    elif kind == "inf":
        bad[5, 1] = np.inf
    elif kind == "negative":
        bad[5] = [-0.2, 0.6, 0.6]
    elif kind == "above_one":
        bad[5] = [1.5, -0.25, -0.25]
    elif kind == "sum":
        bad[5] = [0.3, 0.3, 0.3]
    return bad


BAD_VALUES = [
    ("nan", r"contains NaN or infinite values \(first in row 5\); expected finite"),
    ("inf", r"contains NaN or infinite values \(first in row 5\); expected finite"),
    ("negative", r"contains values outside \[0, 1\] \(min -0\.2, max .*row 5\); expected"),
    ("above_one", r"contains values outside \[0, 1\] \(min -0\.25, max 1\.5, first in row 5\)"),
    ("sum", r"must sum to 1 \(relative tolerance 0\.000345\); row 5 sums to 0\.9$"),
]


@pytest.mark.parametrize(("kind", "message"), BAD_VALUES)
@pytest.mark.parametrize("argument", ["proba_dense", "proba_pruned"])
def test_bad_probabilities_name_the_argument_and_the_problem(outputs, argument, kind, message):
    y, groups, dense, pruned = outputs
    probas = {"proba_dense": dense, "proba_pruned": pruned}
    probas[argument] = _bad(probas[argument], kind)
    with pytest.raises(ValueError, match=rf"{argument} {message}|rows of {argument} {message}"):
        ExcessRiskFrame.from_outputs(y, sensitive_features=groups, classes=CLASSES, **probas)


@pytest.mark.parametrize(("kind", "message"), BAD_VALUES)
def test_the_function_api_checks_the_same(outputs, kind, message):
    y, groups, dense, pruned = outputs
    with pytest.raises(ValueError, match=rf"proba_pruned {message}|rows of proba_pruned"):
        excess_risk(y, _bad(pruned, kind), dense, sensitive_features=groups, labels=CLASSES)


def test_row_sums_use_sklearns_float32_tolerance(outputs):
    y, groups, dense, pruned = outputs
    float32_softmax = pruned.astype(np.float32).astype(np.float64)  # sums off by ~1e-7
    frame = ExcessRiskFrame.from_outputs(
        y, dense, float32_softmax, sensitive_features=groups, classes=CLASSES
    )
    assert np.isfinite(frame.fairness_violation)
    slightly_off = pruned * (1 + 2e-3)
    with pytest.raises(ValueError, match="rows of proba_pruned must sum to 1"):
        ExcessRiskFrame.from_outputs(
            y, dense, slightly_off, sensitive_features=groups, classes=CLASSES
        )


def test_values_a_rounding_above_one_are_accepted_and_clipped():
    y = ["a", "b"]
    dense = np.array([[1.0 + 1e-15, 0.0], [0.25, 0.75]])
    frame = ExcessRiskFrame.from_outputs(y, dense, dense, sensitive_features=["x", "y"])
    assert frame.by_group.loc["x", "loss_dense"] == 0.0


def test_shape_errors_say_what_is_expected(outputs):
    y, groups, dense, pruned = outputs
    with pytest.raises(ValueError, match=r"^proba_dense must have shape \(40, n_classes\), one "
                                         r"row per sample; got \(39, 3\)$"):
        ExcessRiskFrame.from_outputs(y, dense[:-1], pruned, sensitive_features=groups,
                                     classes=CLASSES)
    with pytest.raises(ValueError, match=r"^proba_pruned has 2 columns but there are 3 classes: "
                                         "expected exactly one probability column per class"):
        ExcessRiskFrame.from_outputs(y, dense, pruned[:, :2], sensitive_features=groups,
                                     classes=CLASSES)
    with pytest.raises(ValueError, match="proba_dense must be a numeric array"):
        ExcessRiskFrame.from_outputs(y, [["p", "q", "r"]] * 40, pruned, sensitive_features=groups,
                                     classes=CLASSES)


def test_classes_must_have_one_label_per_column(outputs):
    y, groups, dense, pruned = outputs
    with pytest.raises(ValueError, match=r"^classes has 4 labels but proba_dense has 3 columns: "
                                         "expected one label per probability column"):
        ExcessRiskFrame.from_outputs(y, dense, pruned, sensitive_features=groups,
                                     classes=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="classes repeats labels"):
        ExcessRiskFrame.from_outputs(y, dense, pruned, sensitive_features=groups,
                                     classes=["a", "b", "a"])


def test_a_label_outside_classes_is_an_error(outputs):
    y, groups, dense, pruned = outputs
    y = y.copy()
    y[3] = "z"
    with pytest.raises(ValueError, match=r"^y contains labels that are not in classes: \['z'\]; "
                                         r"expected labels among \['a', 'b', 'c'\]"):
        ExcessRiskFrame.from_outputs(y, dense, pruned, sensitive_features=groups,
                                     classes=CLASSES)
    with pytest.raises(ValueError, match=r"not in labels: \['z'\]"):
        excess_risk(y, pruned, dense, sensitive_features=groups, labels=CLASSES)


def test_y_lacking_a_class_needs_classes(outputs):
    _, groups, dense, pruned = outputs
    y = np.where(np.arange(40) % 2 == 0, "a", "c")  # "b" never occurs
    with pytest.raises(ValueError, match=r"^y holds 2 distinct labels \['a', 'c'\] but "
                                         r"proba_dense has 3 columns, .* pass classes="):
        ExcessRiskFrame.from_outputs(y, dense, pruned, sensitive_features=groups)
    with pytest.raises(ValueError, match="pass labels="):
        excess_risk(y, pruned, dense, sensitive_features=groups)


def test_y_lacking_a_class_is_scored_against_the_right_columns(outputs):
    _, groups, dense, pruned = outputs
    y = np.where(np.arange(40) % 3 == 0, "a", "c")  # "b" never occurs: "c" is column 2
    classes = ["c", "a", "b"]  # not sorted: columns are named by classes, in order
    frame = ExcessRiskFrame.from_outputs(y, dense, pruned, sensitive_features=groups,
                                         classes=classes)
    column = np.where(y == "a", 1, 0)
    rows = np.arange(40)
    loss_dense = -np.log(dense[rows, column])
    loss_pruned = -np.log(pruned[rows, column])
    for g in ("x", "y"):
        mask = groups == g
        expected = loss_pruned[mask].mean() - loss_dense[mask].mean()
        assert frame.by_group.loc[g, "excess_risk"] == pytest.approx(expected, rel=1e-12)
        accuracy = (dense[mask].argmax(axis=1) == column[mask]).mean()
        assert frame.by_group.loc[g, "accuracy_dense"] == pytest.approx(accuracy)
    got = excess_risk(y, pruned, dense, sensitive_features=groups, labels=classes)
    np.testing.assert_allclose(got.to_numpy(), frame.by_group["excess_risk"].to_numpy(),
                               rtol=1e-12)


def test_checks_run_before_any_work(outputs, monkeypatch):
    y, groups, dense, pruned = outputs

    def fail(*args, **kwargs):
        raise AssertionError("group coding ran before the probabilities were checked")

    monkeypatch.setattr("fairprune_sk.metrics._frame.group_codes", fail)
    with pytest.raises(ValueError, match="rows of proba_pruned must sum to 1"):
        ExcessRiskFrame.from_outputs(y, dense, _bad(pruned, "sum"), sensitive_features=groups,
                                     classes=CLASSES)
