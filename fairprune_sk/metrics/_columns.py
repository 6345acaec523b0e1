"""The columns of :class:`ExcessRiskFrame` and the reductions across its groups.

One function, :func:`_column_table`, turns group sizes and the means of the five per-sample
columns into every frame column — R(a) (eq. 2), accuracy drop, ψ_g, flip rate — for the point
estimates and, with leading resample axes, for every bootstrap resample alike.
:func:`_group_reduce` gives min / max / difference / ratio across groups (ξ of eq. (3) is the
``difference`` of ``excess_risk``), and :func:`_frame_metrics` the same columns as metrics of a
fairlearn ``MetricFrame``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from sklearn.utils._param_validation import StrOptions

from ._groups import per_sample_log_loss

#: Per-sample columns, in the order of the internal matrix.
PER_SAMPLE_COLUMNS = ("loss_dense", "loss_pruned", "correct_dense", "correct_pruned", "flipped")

#: Columns of :attr:`ExcessRiskFrame.by_group` and :attr:`ExcessRiskFrame.overall`, in order.
FRAME_COLUMNS = (
    "count",
    "loss_dense",
    "loss_pruned",
    "excess_risk",
    "accuracy_dense",
    "accuracy_pruned",
    "accuracy_drop",
    "excess_accuracy_gap",
    "flip_rate",
)

#: Columns of the bootstrap intervals (``by_group_ci``, ``difference_ci()``, ...): those of
#: :data:`FRAME_COLUMNS` but ``count``, a group size that has no interval.
INTERVAL_COLUMNS = FRAME_COLUMNS[1:]

#: What each column means, for reports and plot labels.
COLUMN_DESCRIPTIONS = {
    "count": "rows of the group",
    "loss_dense": "cross-entropy of the dense net θ*",
    "loss_pruned": "cross-entropy of the pruned net θ̂",
    "excess_risk": "R(a) = loss after pruning − loss before (eq. 2)",
    "accuracy_dense": "accuracy of the dense net",
    "accuracy_pruned": "accuracy of the pruned net",
    "accuracy_drop": "accuracy lost to pruning",
    "excess_accuracy_gap": "ψ = group's accuracy drop − overall drop",
    "flip_rate": "fraction of rows whose predicted class changed",
}

COMPARE_METHODS = ("between_groups", "to_overall")
#: ``validate_params`` constraints of the ``method`` of ``difference`` / ``ratio`` (and ``_ci``).
METHOD_CONSTRAINTS = {"method": [StrOptions(set(COMPARE_METHODS))]}


class _SampleColumns(NamedTuple):
    """The per-sample results every frame number is built from.

    ``values`` holds :data:`PER_SAMPLE_COLUMNS`; ``pred_pruned`` is None when the pruned model
    gave no probabilities.
    """

    values: np.ndarray  # (n_samples, 5)
    pred_dense: np.ndarray  # column positions
    pred_pruned: np.ndarray | None
    confidence_dense: np.ndarray

    @classmethod
    def of(
        cls,
        y_index: np.ndarray,
        proba_dense: np.ndarray,
        proba_pruned: np.ndarray | None,
        correct_pruned: np.ndarray | None = None,
    ) -> _SampleColumns:
        """The columns of checked probabilities; ``correct_pruned`` replaces the pruned
        model's correctness when given (NaN losses and flips without ``proba_pruned``)."""
        n_samples = len(y_index)
        pred_dense = proba_dense.argmax(axis=1)
        if proba_pruned is None:
            pred_pruned = None
            loss_pruned = np.full(n_samples, np.nan)
            flipped = np.full(n_samples, np.nan)
        else:
            pred_pruned = proba_pruned.argmax(axis=1)
            loss_pruned = per_sample_log_loss(proba_pruned, y_index)
            flipped = (pred_pruned != pred_dense).astype(np.float64)
        if correct_pruned is None:
            correct_pruned = (pred_pruned == y_index).astype(np.float64)
        values = np.column_stack(
            [
                per_sample_log_loss(proba_dense, y_index),
                loss_pruned,
                (pred_dense == y_index).astype(np.float64),
                correct_pruned,
                flipped,
            ]
        )
        return cls(values, pred_dense, pred_pruned, proba_dense.max(axis=1))

    @classmethod
    def concatenate(cls, parts: Sequence[_SampleColumns]) -> _SampleColumns:
        """The columns of consecutive batches, in order."""
        return cls(
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.pred_dense for p in parts]),
            None if parts[0].pred_pruned is None
            else np.concatenate([p.pred_pruned for p in parts]),
            np.concatenate([p.confidence_dense for p in parts]),
        )


def _column_table(counts: np.ndarray, means: np.ndarray, overall_means: np.ndarray) -> np.ndarray:
    """Frame columns from group sizes and the means of the per-sample columns.

    ``counts`` has shape ``(..., G)``, ``means`` ``(..., G, 5)``, ``overall_means`` ``(..., 5)``
    (the leading axes index resamples); returns ``(..., G, len(FRAME_COLUMNS))``. The same
    function gives ``overall`` with ``G = 1`` and ``means = overall_means``.
    """
    loss_dense, loss_pruned, correct_dense, correct_pruned, flipped = np.moveaxis(means, -1, 0)
    drop = correct_dense - correct_pruned
    overall_drop = overall_means[..., 2] - overall_means[..., 3]
    columns = [
        counts,
        loss_dense,
        loss_pruned,
        loss_pruned - loss_dense,
        correct_dense,
        correct_pruned,
        drop,
        drop - overall_drop[..., None],
        flipped,
    ]
    return np.stack(np.broadcast_arrays(*columns), axis=-1)


def _group_reduce(table: np.ndarray, overall: np.ndarray, kind: str, method: str) -> np.ndarray:
    """min / max / difference / ratio across the group axis (-2), skipping absent groups."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        if kind == "min":
            return np.nanmin(table, axis=-2)
        if kind == "max":
            return np.nanmax(table, axis=-2)
        if kind == "difference":
            if method == "between_groups":
                return np.nanmax(table, axis=-2) - np.nanmin(table, axis=-2)
            return np.nanmax(np.abs(table - overall[..., None, :]), axis=-2)
        if method == "between_groups":
            ratio = np.nanmin(table, axis=-2) / np.nanmax(table, axis=-2)
        else:
            ratios = table / overall[..., None, :]
            ratio = np.nanmin(np.minimum(ratios, 1.0 / ratios), axis=-2)
        return np.where(np.isfinite(ratio), ratio, np.nan)  # x / 0 is undefined, not ±inf


def _frame_metrics() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Metrics for a fairlearn ``MetricFrame`` whose ``y_pred`` stacks the per-sample columns."""

    def column_mean(col: int) -> Callable[[np.ndarray, np.ndarray], float]:
        return lambda y_true, y_pred: float(np.mean(y_pred[:, col]))

    return {
        "count": lambda y_true, y_pred: float(len(y_true)),
        "loss_dense": column_mean(0),
        "loss_pruned": column_mean(1),
        "excess_risk": lambda y_true, y_pred: float(np.mean(y_pred[:, 1] - y_pred[:, 0])),
        "accuracy_dense": column_mean(2),
        "accuracy_pruned": column_mean(3),
        "accuracy_drop": lambda y_true, y_pred: float(np.mean(y_pred[:, 2] - y_pred[:, 3])),
        "flip_rate": column_mean(4),
    }
