"""Function API: group excess risk (eq. 2), fairness violation ξ (eq. 3), accuracy gaps.

Equations refer to Tran, Fioretto, Kim and Naidu, *Pruning has a disparate impact on model
accuracy*, NeurIPS 2022 (arXiv 2205.13574):

- eq. (2), group excess risk: ``R(a) = J(θ̂; D_a) − J(θ*; D_a)``;
- eq. (3), fairness violation: ``ξ = max_{a,a'} |R(a) − R(a')| = max_a R(a) − min_a R(a)``.

The excess accuracy gap is that of Hashemizadeh et al., *Balancing Act: Constraining Disparate
Impact in Sparse Models*, ICLR 2024: ``ψ_g = (acc*_g − acc_g) − (acc* − acc)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import validate_params

from ._groups import group_codes, group_mean, per_sample_log_loss
from ._proba import check_proba, encode_y, resolve_classes


def _check_predictions(y_pred: Any, name: str, n_samples: int) -> np.ndarray:
    """``y_pred`` as a flat array with one prediction per sample of ``y_true``."""
    y_pred = np.asarray(y_pred).ravel()
    if len(y_pred) != n_samples:
        raise ValueError(f"{name} has {len(y_pred)} samples but y_true has {n_samples}")
    return y_pred


def _group_accuracy(y_true: Any, y_pred: Any, sensitive_features: Any) -> np.ndarray:
    """Accuracy of ``y_pred`` in every group, in the order of the group codes."""
    y_true = np.asarray(y_true).ravel()
    y_pred = _check_predictions(y_pred, "y_pred", len(y_true))
    groups = group_codes(sensitive_features, len(y_true))
    return group_mean((y_true == y_pred).astype(np.float64), groups)


@validate_params(
    {
        "y_true": ["array-like"],
        "proba_pruned": ["array-like"],
        "proba_dense": ["array-like"],
        "sensitive_features": ["array-like"],
        "labels": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def excess_risk(
    y_true: Any,
    proba_pruned: np.ndarray,
    proba_dense: np.ndarray,
    *,
    sensitive_features: Any,
    labels: Any = None,
) -> pd.Series:
    """Group excess risk ``R(a) = J(θ̂; D_a) − J(θ*; D_a)`` (eq. 2), with ``J`` the cross-entropy.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba_pruned, proba_dense : ndarray of shape (n_samples, n_classes)
        ``predict_proba`` of the pruned net θ̂ and of the dense net θ*.
    sensitive_features : array-like, Series or DataFrame
        Group membership (several columns: intersectional groups).
    labels : array-like of shape (n_classes,), optional
        Class labels in the column order of the probabilities. If None, ``np.unique(y_true)``,
        which is only allowed when ``y_true`` holds every class (one label per column).

    Raises
    ------
    ValueError
        If the probabilities are not finite, in [0, 1] and summing to 1 per row (as sklearn's
        ``log_loss`` checks them), do not have one column per label, or ``y_true`` holds a label
        not in ``labels``.

    Returns
    -------
    pandas.Series
        ``R(a)`` indexed by group.

    Examples
    --------
    >>> from fairprune_sk.metrics import excess_risk
    >>> y = [0, 0, 1, 1, 1, 0]
    >>> dense = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.7, 0.3]]
    >>> pruned = [[0.6, 0.4], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2]]
    >>> groups = ["a", "a", "a", "b", "b", "b"]
    >>> excess_risk(y, pruned, dense, sensitive_features=groups).round(3).to_dict()
    {'a': 0.366, 'b': 0.091}
    """
    y_true = np.asarray(y_true).ravel()
    n_samples = len(y_true)
    proba_dense = check_proba(proba_dense, "proba_dense", n_samples=n_samples, n_classes=None)
    labels = resolve_classes(
        labels, y_true, proba_dense.shape[1], name="labels", proba_name="proba_dense"
    )
    proba_pruned = check_proba(
        proba_pruned, "proba_pruned", n_samples=n_samples, n_classes=len(labels)
    )
    y_index = encode_y(y_true, labels, name="labels")
    groups = group_codes(sensitive_features, n_samples)
    loss_pruned = per_sample_log_loss(proba_pruned, y_index)
    loss_dense = per_sample_log_loss(proba_dense, y_index)
    values = group_mean(loss_pruned - loss_dense, groups)
    return pd.Series(values, index=groups.index, name="excess_risk")


@validate_params(
    {
        "y_true": ["array-like"],
        "proba_pruned": ["array-like"],
        "proba_dense": ["array-like"],
        "sensitive_features": ["array-like"],
        "labels": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def fairness_violation(
    y_true: Any,
    proba_pruned: np.ndarray,
    proba_dense: np.ndarray,
    *,
    sensitive_features: Any,
    labels: Any = None,
) -> float:
    """Fairness violation ``ξ = max_{a,a'} |R(a) − R(a')|`` (eq. 3).

    Same parameters as :func:`excess_risk`.

    Examples
    --------
    >>> from fairprune_sk.metrics import fairness_violation
    >>> y = [0, 0, 1, 1, 1, 0]
    >>> dense = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.7, 0.3]]
    >>> pruned = [[0.6, 0.4], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2]]
    >>> groups = ["a", "a", "a", "b", "b", "b"]
    >>> round(fairness_violation(y, pruned, dense, sensitive_features=groups), 3)
    0.276
    """
    risk = excess_risk(
        y_true, proba_pruned, proba_dense, sensitive_features=sensitive_features, labels=labels
    )
    return float(risk.max() - risk.min())


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "sensitive_features": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def accuracy_gap(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    """Accuracy-gap violation: max − min group accuracy, as reported in the paper's experiments.

    Examples
    --------
    >>> from fairprune_sk.metrics import accuracy_gap
    >>> accuracy_gap([0, 1, 0, 1], [0, 1, 1, 1], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    accuracy = _group_accuracy(y_true, y_pred, sensitive_features)
    return float(accuracy.max() - accuracy.min())


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "sensitive_features": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def worst_group_accuracy(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    """Accuracy of the group with the lowest accuracy.

    Examples
    --------
    >>> from fairprune_sk.metrics import worst_group_accuracy
    >>> worst_group_accuracy([0, 1, 0, 1], [0, 1, 1, 1], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    return float(_group_accuracy(y_true, y_pred, sensitive_features).min())


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred_pruned": ["array-like"],
        "y_pred_dense": ["array-like"],
        "sensitive_features": ["array-like"],
    },
    prefer_skip_nested_validation=True,
)
def excess_accuracy_gap(
    y_true: Any, y_pred_pruned: Any, y_pred_dense: Any, *, sensitive_features: Any
) -> pd.Series:
    """Excess accuracy gap ``ψ_g = (acc*_g − acc_g) − (acc* − acc)`` of every group.

    How much more accuracy group ``g`` lost to pruning than the whole population did
    (Hashemizadeh et al., ICLR 2024). Positive: the group paid more than average.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred_pruned, y_pred_dense : array-like of shape (n_samples,)
        Predicted labels of the pruned net θ̂ and of the dense net θ*.
    sensitive_features : array-like, Series or DataFrame
        Group membership (several columns: intersectional groups).

    Returns
    -------
    pandas.Series
        ``ψ_g`` indexed by group.

    Examples
    --------
    Group ``b`` loses half its accuracy, the population a quarter:

    >>> from fairprune_sk.metrics import excess_accuracy_gap
    >>> excess_accuracy_gap([0, 1, 0, 1], [0, 1, 1, 1], [0, 1, 0, 1],
    ...                     sensitive_features=["a", "a", "b", "b"]).to_dict()
    {'a': -0.25, 'b': 0.25}
    """
    y_true = np.asarray(y_true).ravel()
    groups = group_codes(sensitive_features, len(y_true))
    y_pred_pruned = _check_predictions(y_pred_pruned, "y_pred_pruned", len(y_true))
    y_pred_dense = _check_predictions(y_pred_dense, "y_pred_dense", len(y_true))
    drop = (y_pred_dense == y_true).astype(np.float64) - (y_pred_pruned == y_true)
    values = group_mean(drop, groups) - drop.mean()
    return pd.Series(values, index=groups.index, name="excess_accuracy_gap")
