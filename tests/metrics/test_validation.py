"""Argument checks of the metrics speak sklearn's ``validate_params`` words: the parameter, the
function or method it belongs to, what it must be and the value got."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from fairprune_sk import ExcessRiskFrame, accuracy_gap, excess_risk, fairness_violation
from fairprune_sk.metrics import (
    PruningScorer,
    excess_accuracy_gap,
    make_pruning_scorer,
    pruning_scorers,
    worst_group_accuracy,
)

Y = [0, 1, 1, 0]
GROUPS = ["a", "a", "b", "b"]
PROBA = [[0.6, 0.4], [0.3, 0.7], [0.5, 0.5], [0.9, 0.1]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: excess_risk(Y, 0.5, PROBA, sensitive_features=GROUPS),
         r"^The 'proba_pruned' parameter of excess_risk must be an array-like. Got 0.5 instead.$"),
        (lambda: fairness_violation(Y, PROBA, PROBA, sensitive_features=GROUPS, labels=3),
         r"^The 'labels' parameter of fairness_violation must be an array-like or None. Got 3"),
        (lambda: accuracy_gap(Y, Y, sensitive_features="a"),
         r"^The 'sensitive_features' parameter of accuracy_gap must be an array-like. Got 'a'"),
        (lambda: worst_group_accuracy(7, Y, sensitive_features=GROUPS),
         r"^The 'y_true' parameter of worst_group_accuracy must be an array-like. Got 7"),
        (lambda: excess_accuracy_gap(Y, Y, None, sensitive_features=GROUPS),
         r"^The 'y_pred_dense' parameter of excess_accuracy_gap must be an array-like. Got None"),
    ],
)
def test_metric_functions_validate_their_arguments(call, message):
    with pytest.raises(InvalidParameterError, match=message):
        call()


def test_frame_constructor_validates_its_arguments(two_models):
    X, y, group, dense, pruned = two_models
    with pytest.raises(InvalidParameterError, match=r"'reference' parameter of "
                                                    r"ExcessRiskFrame must be"):
        ExcessRiskFrame(pruned, X, y, sensitive_features=group, reference="dense")
    with pytest.raises(InvalidParameterError, match=r"'n_boot' parameter of "
                                                    r"ExcessRiskFrame must be an int in "
                                                    r"the range \[1, inf\) or None. Got -1"):
        ExcessRiskFrame(pruned, X, y, sensitive_features=group, reference=dense, n_boot=-1)
    with pytest.raises(InvalidParameterError, match=r"'ci_quantiles' parameter of "
                                                    r"ExcessRiskFrame must be strictly "
                                                    r"increasing. Got \[0.5, 0.5\] instead."):
        ExcessRiskFrame(pruned, X, y, sensitive_features=group, reference=dense, n_boot=5,
                        ci_quantiles=[0.5, 0.5])


def test_frame_methods_validate_their_arguments():
    frame = ExcessRiskFrame.from_outputs(Y * 10, PROBA * 10, PROBA[::-1] * 10,
                                         sensitive_features=GROUPS * 10, n_boot=20,
                                         random_state=0)
    for method in (frame.difference, frame.ratio, frame.difference_ci, frame.ratio_ci):
        with pytest.raises(InvalidParameterError, match=rf"^The 'method' parameter of "
                                                        rf"ExcessRiskFrame.{method.__name__} "
                                                        "must be a str among .*Got 'x' instead"):
            method("x")
    with pytest.raises(InvalidParameterError, match=r"'columns' parameter of "
                                                    r"ExcessRiskFrame.by_group_with_ci must be a "
                                                    r"sequence of columns among .*Got \['risk'\]"):
        frame.by_group_with_ci(["risk"])
    with pytest.raises(InvalidParameterError, match="'columns' parameter .* must be an array-like"):
        frame.by_group_with_ci("excess_risk")
    with pytest.raises(InvalidParameterError, match="'column' parameter of "
                                                    "ExcessRiskFrame.separated_pairs must be a "
                                                    "str among"):
        frame.separated_pairs("risk")
    with pytest.raises(InvalidParameterError, match="'simultaneous' parameter .* must be an "
                                                    "instance of 'bool'"):
        frame.separated_pairs(simultaneous="yes")


def test_from_outputs_validates_its_arguments():
    with pytest.raises(InvalidParameterError, match="'proba_dense' parameter of "
                                                    "ExcessRiskFrame.from_outputs must be an "
                                                    "array-like. Got None instead."):
        ExcessRiskFrame.from_outputs(Y, None, PROBA, sensitive_features=GROUPS)
    with pytest.raises(InvalidParameterError, match="'classes' parameter of "
                                                    "ExcessRiskFrame.from_outputs must be an "
                                                    "array-like or None. Got 2 instead."):
        ExcessRiskFrame.from_outputs(Y, PROBA, PROBA, sensitive_features=GROUPS, classes=2)


def test_scorers_validate_their_arguments():
    with pytest.raises(InvalidParameterError, match=r"^The 'metric' parameter of "
                                                    r"PruningScorer.__init__ must be a str among "
                                                    r".*Got 'auc' instead.$"):
        PruningScorer("auc")
    with pytest.raises(InvalidParameterError, match=r"'weight' parameter of make_pruning_scorer "
                                                    r"must be a float in the range \[0.0, inf\)"):
        make_pruning_scorer("combined", weight=-1.0)
    with pytest.raises(InvalidParameterError, match="'weight' parameter of pruning_scorers"):
        pruning_scorers(weight="heavy")
    assert make_pruning_scorer("combined", weight=np.float32(0.5)).weight == 0.5
