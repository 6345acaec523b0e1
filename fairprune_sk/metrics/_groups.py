"""Group coding, label encoding and the one per-sample loss every audit number is built on.

Losses are computed once per sample, then aggregated per group with ``numpy.bincount``: no
Python loop over rows anywhere in the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_EPS = 1e-12
_DEFAULT_FEATURE_NAME = "sensitive_feature_{}"


# --------------------------------------------------------------------------------------------
# groups
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupCodes:
    """Integer group code per sample and the matching group labels.

    Attributes
    ----------
    codes : ndarray of shape (n_samples,)
        Group index in ``0 .. n_groups - 1`` for every sample.
    index : pandas.Index
        Group labels, position ``k`` for code ``k``; a ``MultiIndex`` for several columns.
    """

    codes: np.ndarray
    index: pd.Index

    @property
    def n_groups(self) -> int:
        return len(self.index)


def _as_frame(sensitive_features: Any) -> pd.DataFrame:
    if isinstance(sensitive_features, pd.DataFrame):
        frame = sensitive_features.copy()
        frame.columns = [
            _DEFAULT_FEATURE_NAME.format(i) if c is None else c for i, c in enumerate(frame.columns)
        ]
        return frame.reset_index(drop=True)
    if isinstance(sensitive_features, pd.Series):
        name = sensitive_features.name
        name = _DEFAULT_FEATURE_NAME.format(0) if name is None else name
        return sensitive_features.reset_index(drop=True).to_frame(name=name)
    if isinstance(sensitive_features, dict):
        return pd.DataFrame(sensitive_features)
    array = np.asarray(sensitive_features, dtype=object)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(
            "sensitive_features must be 1-D, or 2-D with one column per feature; "
            f"got an array with {array.ndim} dimensions"
        )
    return pd.DataFrame(
        array, columns=[_DEFAULT_FEATURE_NAME.format(i) for i in range(array.shape[1])]
    )


def group_codes(sensitive_features: Any, n_samples: int | None = None) -> GroupCodes:
    """Map sensitive features to integer group codes.

    Parameters
    ----------
    sensitive_features : array-like, Series or DataFrame of shape (n_samples,) or (n_samples, k)
        Group membership. Several columns define intersectional groups (a ``MultiIndex``).
    n_samples : int, optional
        Expected number of samples; a different length raises ``ValueError`` naming both.

    Returns
    -------
    GroupCodes

    Examples
    --------
    >>> import pandas as pd
    >>> from fairprune_sk.metrics import group_codes, group_mean
    >>> A = pd.DataFrame({"race": ["x", "y", "x", "y"], "sex": ["F", "F", "M", "F"]})
    >>> groups = group_codes(A)
    >>> groups.codes.tolist(), groups.index.tolist()
    ([0, 2, 1, 2], [('x', 'F'), ('x', 'M'), ('y', 'F')])
    >>> group_mean([1.0, 0.0, 1.0, 1.0], groups).tolist()
    [1.0, 1.0, 0.5]
    """
    frame = _as_frame(sensitive_features)
    if n_samples is not None and len(frame) != n_samples:
        raise ValueError(
            f"sensitive_features has {len(frame)} rows but X and y have {n_samples}; "
            "pass one group label per sample"
        )
    if frame.shape[1] == 0:
        raise ValueError("sensitive_features has no columns")
    if frame.isna().to_numpy().any():
        columns = list(frame.columns[frame.isna().any()])
        raise ValueError(f"sensitive_features contains missing values in column(s) {columns}")
    grouped = frame.groupby(list(frame.columns), sort=True, observed=True)
    codes = grouped.ngroup().to_numpy(dtype=np.int64)
    index = grouped.size().index
    return GroupCodes(codes=codes, index=index)


def group_sum(values: np.ndarray, groups: GroupCodes) -> np.ndarray:
    """Sum ``values`` per group with one ``bincount`` (no loop over rows).

    Examples
    --------
    >>> from fairprune_sk.metrics import group_codes, group_sum
    >>> group_sum([1.0, 2.0, 3.0], group_codes(["b", "a", "b"])).tolist()
    [2.0, 4.0]
    """
    return np.bincount(groups.codes, weights=values, minlength=groups.n_groups)


def group_mean(values: np.ndarray, groups: GroupCodes) -> np.ndarray:
    """Mean of ``values`` per group; groups must be non-empty (they always are by construction)."""
    counts = np.bincount(groups.codes, minlength=groups.n_groups)
    return group_sum(np.asarray(values, dtype=np.float64), groups) / counts


# --------------------------------------------------------------------------------------------
# per-sample quantities
# --------------------------------------------------------------------------------------------
def encode_labels(y: Any, classes: np.ndarray) -> np.ndarray:
    """Positions of the labels ``y`` in ``classes`` (sorted or not).

    Raises
    ------
    ValueError
        If ``y`` holds labels that are not in ``classes``.

    Examples
    --------
    >>> from fairprune_sk.metrics import encode_labels
    >>> encode_labels(["yes", "no", "yes"], ["yes", "no"]).tolist()
    [0, 1, 0]
    """
    y = np.asarray(y).ravel()
    classes = np.asarray(classes)
    try:
        order = np.argsort(classes, kind="stable")  # classes need not be sorted
        found = np.clip(np.searchsorted(classes[order], y), 0, len(classes) - 1)
    except TypeError as exc:
        raise ValueError(
            f"y has labels of another type than the classes seen in fit {classes.tolist()}"
        ) from exc
    positions = order[found]
    unknown = classes[positions] != y
    if np.any(unknown):
        raise ValueError(
            f"y contains labels not seen in fit: {np.unique(y[unknown]).tolist()[:10]}; "
            f"known classes are {classes.tolist()}"
        )
    return positions.astype(np.int64)


def per_sample_log_loss(proba: np.ndarray, y_index: np.ndarray) -> np.ndarray:
    """Cross-entropy ``-log p(y_i | x_i)`` of every sample (probabilities clipped at 1e-12).

    Examples
    --------
    >>> from fairprune_sk.metrics import per_sample_log_loss
    >>> per_sample_log_loss([[0.5, 0.5], [0.9, 0.1]], [0, 1]).round(3).tolist()
    [0.693, 2.303]
    """
    proba = np.asarray(proba, dtype=np.float64)
    picked = proba[np.arange(len(y_index)), y_index]
    return -np.log(np.clip(picked, _EPS, 1.0))

