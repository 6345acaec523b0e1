"""Checks of class probabilities and of the labels of their columns, as sklearn's ``log_loss``.

Every number of the audit is a cross-entropy or an argmax of probabilities, so a probability
matrix is checked before any work: numeric and finite, in [0, 1], rows summing to 1 within
:data:`PROBA_SUM_RTOL`, one row per sample and exactly one column per class. The labels of the
columns come from ``classes`` (or, only when ``y`` holds every class, from ``np.unique(y)``), and
``y`` is encoded as column positions, so a ``y`` lacking a class is still scored against the
right columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PROBA_SUM_RTOL", "check_proba", "encode_y", "resolve_classes"]

#: Relative tolerance of the row sums: sklearn's ``log_loss`` tolerance ``sqrt(eps)`` for
#: float32 probabilities, used for every dtype (float32 outputs are often cast to float64).
PROBA_SUM_RTOL = float(np.sqrt(np.finfo(np.float32).eps))
#: Rounding slack outside [0, 1] (a mixture's float sum may exceed 1 by a few ulps); values
#: within it are clipped into [0, 1].
_RANGE_SLACK = 1e-12
_SHOWN = 10  # labels listed in a message


def _row(mask: np.ndarray, offset: int) -> int:
    return int(np.flatnonzero(mask)[0]) + offset


def check_proba(
    proba: Any, name: str, *, n_samples: int | None, n_classes: int | None, row_offset: int = 0
) -> np.ndarray:
    """``proba`` as float64 class probabilities, checked as sklearn's ``log_loss`` checks them.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities, one row per sample, one column per class.
    name : str
        How the message names ``proba`` (the argument, or the model call that gave it).
    n_samples : int or None
        Expected number of rows (None: any).
    n_classes : int or None
        Expected number of columns (None: any, at least 1).
    row_offset : int, default=0
        Added to the row positions a message reports (the first row of a batch).

    Returns
    -------
    ndarray of shape (n_samples, n_classes), float64

    Raises
    ------
    ValueError
        If ``proba`` is not numeric, not 2-D with the expected shape, holds NaN or infinite
        values or values outside [0, 1], or a row does not sum to 1 within
        :data:`PROBA_SUM_RTOL`. The message names ``name``, the problem and what is expected.

    Examples
    --------
    >>> from fairprune_sk.metrics._proba import check_proba
    >>> check_proba([[0.25, 0.75]], "proba", n_samples=1, n_classes=2).tolist()
    [[0.25, 0.75]]
    >>> check_proba([[0.5, 0.6]], "proba", n_samples=1, n_classes=2)
    Traceback (most recent call last):
    ...
    ValueError: rows of proba must sum to 1 (relative tolerance 0.000345); row 0 sums to 1.1
    """
    try:
        array = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a numeric array of class probabilities of shape (n_samples, "
            f"n_classes); got a value of type {type(proba).__name__} that is not numeric"
        ) from None
    expected = (
        f"({'n_samples' if n_samples is None else n_samples}, "
        f"{'n_classes' if n_classes is None else n_classes})"
    )
    if array.ndim != 2 or (n_samples is not None and array.shape[0] != n_samples):
        raise ValueError(
            f"{name} must have shape {expected}, one row per sample; got {array.shape}"
        )
    if n_classes is not None and array.shape[1] != n_classes:
        raise ValueError(
            f"{name} has {array.shape[1]} columns but there are {n_classes} classes: expected "
            "exactly one probability column per class, in the order of the classes"
        )
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no columns; expected one probability column per class")
    if array.size == 0:
        return array
    finite = np.isfinite(array)
    if not finite.all():
        row = _row(~finite.all(axis=1), row_offset)
        raise ValueError(
            f"{name} contains NaN or infinite values (first in row {row}); expected finite "
            "probabilities"
        )
    low, high = float(array.min()), float(array.max())
    if low < -_RANGE_SLACK or high > 1.0 + _RANGE_SLACK:
        bad = (array < -_RANGE_SLACK) | (array > 1.0 + _RANGE_SLACK)
        raise ValueError(
            f"{name} contains values outside [0, 1] (min {low:.6g}, max {high:.6g}, first in "
            f"row {_row(bad.any(axis=1), row_offset)}); expected probabilities in [0, 1], "
            "not logits or log-probabilities"
        )
    if low < 0.0 or high > 1.0:
        array = np.clip(array, 0.0, 1.0)
    sums = array.sum(axis=1)
    off = ~np.isclose(sums, 1.0, rtol=PROBA_SUM_RTOL, atol=0.0)
    if off.any():
        first = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"rows of {name} must sum to 1 (relative tolerance {PROBA_SUM_RTOL:.3g}); row "
            f"{first + row_offset} sums to {sums[first]:.6g}"
        )
    return array


def resolve_classes(classes: Any, y: np.ndarray, n_columns: int, *, name: str,
                    proba_name: str) -> np.ndarray:
    """The label of every probability column: ``classes``, or ``np.unique(y)`` if it fits.

    Parameters
    ----------
    classes : array-like of shape (n_classes,) or None
        Labels of the columns, in column order.
    y : ndarray of shape (n_samples,)
        True labels.
    n_columns : int
        Number of probability columns.
    name : str
        How the messages name ``classes`` (the argument name).
    proba_name : str
        How the messages name the probabilities.

    Returns
    -------
    ndarray of shape (n_columns,)

    Raises
    ------
    ValueError
        If ``classes`` is not 1-D, repeats a label or has another length than the columns; or,
        without ``classes``, if ``y`` does not hold exactly one label per column (a ``y``
        lacking a class cannot say which column is which).
    """
    if classes is None:
        labels = np.unique(y)
        if len(labels) != n_columns:
            raise ValueError(
                f"y holds {len(labels)} distinct labels {labels.tolist()[:_SHOWN]} but "
                f"{proba_name} has {n_columns} columns, so the column of each label is "
                f"unknown: pass {name}= (the label of each column, in column order)"
            )
        return labels
    labels = np.asarray(classes)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per column); got shape {labels.shape}")
    if len(labels) != n_columns:
        raise ValueError(
            f"{name} has {len(labels)} labels but {proba_name} has {n_columns} columns: "
            f"expected one label per probability column, in column order"
        )
    if pd.Index(labels).has_duplicates:
        raise ValueError(f"{name} repeats labels {labels.tolist()[:_SHOWN]}; expected distinct "
                         "labels, one per column")
    return labels


def encode_y(y: np.ndarray, classes: np.ndarray, *, name: str) -> np.ndarray:
    """The column position of every label of ``y`` in ``classes``.

    Raises
    ------
    ValueError
        If ``y`` holds a label that is not in ``classes`` (the message names ``name``).
    """
    positions = pd.Index(classes).get_indexer(np.asarray(y).ravel())
    unknown = positions < 0
    if unknown.any():
        missing = pd.unique(np.asarray(y).ravel()[unknown]).tolist()
        raise ValueError(
            f"y contains labels that are not in {name}: {missing[:_SHOWN]}; expected labels "
            f"among {np.asarray(classes).tolist()[:_SHOWN]} (the labels of the probability "
            "columns)"
        )
    return positions.astype(np.int64)
