"""Per-group losses, excess risk (eq. 2), fairness violation ξ (eq. 3) and :class:`ExcessRiskFrame`.

Losses are computed once per sample (one forward pass per model), then aggregated per group
with ``numpy.bincount``: no Python loop over rows. The per-sample loss is the cross-entropy
``-log p(y | x)`` read off ``predict_proba``, so any fitted classifier with ``predict_proba``
and ``classes_`` can serve as the dense reference.

Equations refer to Tran, Fioretto, Kim and Naidu, *Pruning has a disparate impact on model
accuracy*, NeurIPS 2022 (arXiv 2205.13574):

- eq. (2), group excess risk: ``R(a) = J(θ̂; D_a) − J(θ*; D_a)``;
- eq. (3), fairness violation: ``ξ = max_{a,a'} |R(a) − R(a')| = max_a R(a) − min_a R(a)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.metadata_routing import MetadataRequest

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
    """Sum ``values`` per group with one ``bincount`` (no loop over rows)."""
    return np.bincount(groups.codes, weights=values, minlength=groups.n_groups)


def group_mean(values: np.ndarray, groups: GroupCodes) -> np.ndarray:
    """Mean of ``values`` per group; groups must be non-empty (they always are by construction)."""
    counts = np.bincount(groups.codes, minlength=groups.n_groups)
    return group_sum(np.asarray(values, dtype=np.float64), groups) / counts


# --------------------------------------------------------------------------------------------
# per-sample quantities
# --------------------------------------------------------------------------------------------
def encode_labels(y: Any, classes: np.ndarray) -> np.ndarray:
    """Positions of the labels ``y`` in ``classes``.

    Raises
    ------
    ValueError
        If ``y`` holds labels that are not in ``classes``.
    """
    y = np.asarray(y).ravel()
    classes = np.asarray(classes)
    try:
        positions = np.searchsorted(classes, y)
    except TypeError as exc:
        raise ValueError(
            f"y has labels of another type than the classes seen in fit {classes.tolist()}"
        ) from exc
    positions = np.clip(positions, 0, len(classes) - 1)
    unknown = classes[positions] != y
    if np.any(unknown):
        raise ValueError(
            f"y contains labels not seen in fit: {np.unique(y[unknown]).tolist()[:10]}; "
            f"known classes are {classes.tolist()}"
        )
    return positions.astype(np.int64)


def per_sample_log_loss(proba: np.ndarray, y_index: np.ndarray) -> np.ndarray:
    """Cross-entropy ``-log p(y_i | x_i)`` of every sample (probabilities clipped at 1e-12)."""
    proba = np.asarray(proba, dtype=np.float64)
    picked = proba[np.arange(len(y_index)), y_index]
    return -np.log(np.clip(picked, _EPS, 1.0))


def _check_proba(proba: np.ndarray, n_samples: int, name: str) -> np.ndarray:
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[0] != n_samples:
        raise ValueError(
            f"{name} must have shape (n_samples, n_classes) = ({n_samples}, ...); got {proba.shape}"
        )
    return proba


# --------------------------------------------------------------------------------------------
# function API: eq. (2), eq. (3), accuracy gap
# --------------------------------------------------------------------------------------------
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
        Class labels in the column order of the probabilities; ``np.unique(y_true)`` if None.

    Returns
    -------
    pandas.Series
        ``R(a)`` indexed by group.
    """
    y_true = np.asarray(y_true).ravel()
    labels = np.unique(y_true) if labels is None else np.asarray(labels)
    y_index = encode_labels(y_true, labels)
    groups = group_codes(sensitive_features, len(y_true))
    loss_pruned = per_sample_log_loss(
        _check_proba(proba_pruned, len(y_true), "proba_pruned"), y_index
    )
    loss_dense = per_sample_log_loss(_check_proba(proba_dense, len(y_true), "proba_dense"), y_index)
    values = group_mean(loss_pruned - loss_dense, groups)
    return pd.Series(values, index=groups.index, name="excess_risk")


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
    """
    risk = excess_risk(
        y_true, proba_pruned, proba_dense, sensitive_features=sensitive_features, labels=labels
    )
    return float(risk.max() - risk.min())


def accuracy_gap(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    """Accuracy-gap violation: max − min group accuracy, as reported in the paper's experiments."""
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if len(y_pred) != len(y_true):
        raise ValueError(f"y_pred has {len(y_pred)} samples but y_true has {len(y_true)}")
    groups = group_codes(sensitive_features, len(y_true))
    accuracy = group_mean((y_true == y_pred).astype(np.float64), groups)
    return float(accuracy.max() - accuracy.min())


def worst_group_accuracy(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> float:
    """Accuracy of the group with the lowest accuracy."""
    y_true = np.asarray(y_true).ravel()
    groups = group_codes(sensitive_features, len(y_true))
    return float(
        group_mean((y_true == np.asarray(y_pred).ravel()).astype(np.float64), groups).min()
    )


# --------------------------------------------------------------------------------------------
# ExcessRiskFrame
# --------------------------------------------------------------------------------------------
def _frame_metrics() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Metrics for a fairlearn ``MetricFrame`` whose ``y_pred`` stacks per-sample columns
    ``[loss_dense, loss_pruned, correct_dense, correct_pruned]``."""

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
    }


class ExcessRiskFrame:
    """Per-group audit of a pruned net against its dense reference, in fairlearn's vocabulary.

    Everything is computed once, in the constructor, from one forward pass per model:
    per-sample cross-entropy and correctness, aggregated per group with ``bincount``.

    Parameters
    ----------
    net : fitted classifier
        The pruned net θ̂ (any estimator with ``predict_proba`` and ``classes_``). Without
        ``reference`` it must be a pruned :class:`~fairprune_sk.PrunableNetClassifier`, whose
        dense reference θ* (kept by ``prune``) is used.
    X : array-like of shape (n_samples, n_features)
        Evaluation data, as accepted by ``net.predict_proba``.
    y : array-like of shape (n_samples,)
        True labels (any labels of ``net.classes_``).
    sensitive_features : array-like, Series or DataFrame of shape (n_samples,) or (n_samples, k)
        Group membership; several columns give intersectional groups.
    reference : fitted classifier, optional
        An explicit dense reference with the same ``classes_``.

    Attributes
    ----------
    by_group : pandas.DataFrame
        One row per group: ``count``, ``loss_dense``, ``loss_pruned``, ``excess_risk`` (eq. 2),
        ``accuracy_dense``, ``accuracy_pruned``, ``accuracy_drop``.
    overall : pandas.Series
        The same quantities over all samples.
    fairness_violation : float
        ξ of eq. (3), equal to ``difference()["excess_risk"]``.
    accuracy_gap : float
        Max − min group accuracy of the pruned net.

    Examples
    --------
    >>> frame = ExcessRiskFrame(net, X_test, y_test, sensitive_features=race)  # doctest: +SKIP
    >>> frame.by_group[["excess_risk", "accuracy_drop"]]                         # doctest: +SKIP
    >>> frame.fairness_violation                                                 # doctest: +SKIP
    """

    def __init__(
        self,
        net: Any,
        X: Any,
        y: Any,
        *,
        sensitive_features: Any,
        reference: Any = None,
    ) -> None:
        if reference is None:
            dense_reference = getattr(net, "dense_reference", None)
            if dense_reference is None:
                raise ValueError(
                    f"{type(net).__name__} keeps no dense reference; pass reference= "
                    "(a fitted dense classifier with the same classes_)"
                )
            reference = dense_reference()
        classes = np.asarray(net.classes_)
        if not np.array_equal(np.asarray(reference.classes_), classes):
            raise ValueError(
                f"reference.classes_ {np.asarray(reference.classes_).tolist()} differ from "
                f"net.classes_ {classes.tolist()}"
            )
        y = np.asarray(y).ravel()
        self._groups = group_codes(sensitive_features, len(y))
        y_index = encode_labels(y, classes)
        proba_pruned = _check_proba(net.predict_proba(X), len(y), "net.predict_proba(X)")
        proba_dense = _check_proba(reference.predict_proba(X), len(y), "reference.predict_proba(X)")
        self._per_sample = np.column_stack(
            [
                per_sample_log_loss(proba_dense, y_index),
                per_sample_log_loss(proba_pruned, y_index),
                proba_dense.argmax(axis=1) == y_index,
                proba_pruned.argmax(axis=1) == y_index,
            ]
        ).astype(np.float64)
        self._y = y
        self._sensitive_features = sensitive_features
        self._by_group = self._aggregate_by_group()
        self._overall = self._aggregate_overall()
        self._metric_frame = None

    @staticmethod
    def _columns(count, means) -> dict[str, Any]:
        """The frame's columns from the count and the means of the four per-sample columns."""
        loss_dense, loss_pruned, correct_dense, correct_pruned = means
        return {
            "count": count,
            "loss_dense": loss_dense,
            "loss_pruned": loss_pruned,
            "excess_risk": loss_pruned - loss_dense,
            "accuracy_dense": correct_dense,
            "accuracy_pruned": correct_pruned,
            "accuracy_drop": correct_dense - correct_pruned,
        }

    def _aggregate_by_group(self) -> pd.DataFrame:
        groups = self._groups
        means = [group_mean(self._per_sample[:, j], groups) for j in range(4)]
        counts = np.bincount(groups.codes, minlength=groups.n_groups)
        return pd.DataFrame(self._columns(counts, means), index=groups.index)

    def _aggregate_overall(self) -> pd.Series:
        return pd.Series(self._columns(len(self._y), self._per_sample.mean(axis=0)))

    # -- MetricFrame vocabulary -------------------------------------------------------------
    @property
    def by_group(self) -> pd.DataFrame:
        """Per-group table (a copy)."""
        return self._by_group.copy()

    @property
    def overall(self) -> pd.Series:
        """The same quantities over all samples (a copy)."""
        return self._overall.copy()

    def group_min(self) -> pd.Series:
        """Smallest value of each column across groups."""
        return self._by_group.min()

    def group_max(self) -> pd.Series:
        """Largest value of each column across groups."""
        return self._by_group.max()

    def difference(self, method: str = "between_groups") -> pd.Series:
        """Max − min across groups, or (``to_overall``) max |group − overall|."""
        if method == "between_groups":
            return self._by_group.max() - self._by_group.min()
        if method == "to_overall":
            return (self._by_group - self._overall).abs().max()
        raise ValueError(f"method must be 'between_groups' or 'to_overall'; got {method!r}")

    def ratio(self, method: str = "between_groups") -> pd.Series:
        """Min / max across groups, or (``to_overall``) the smallest group/overall ratio."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if method == "between_groups":
                return self._by_group.min() / self._by_group.max()
            if method == "to_overall":
                ratios = self._by_group / self._overall
                return np.minimum(ratios, 1.0 / ratios).min()
        raise ValueError(f"method must be 'between_groups' or 'to_overall'; got {method!r}")

    @property
    def fairness_violation(self) -> float:
        """ξ, eq. (3): ``max_{a,a'} |R(a) − R(a')|``."""
        return float(self.difference()["excess_risk"])

    @property
    def accuracy_gap(self) -> float:
        """Max − min group accuracy of the pruned net."""
        return float(self.difference()["accuracy_pruned"])

    @property
    def metric_frame(self):
        """A real ``fairlearn.metrics.MetricFrame`` with the same columns (built on first use).

        Its ``y_pred`` stacks the per-sample dense/pruned losses and correctness, so its
        ``difference()["excess_risk"]`` is ξ. Building it costs fairlearn's per-row grouping.
        """
        if self._metric_frame is None:
            from fairlearn.metrics import MetricFrame

            self._metric_frame = MetricFrame(
                metrics=_frame_metrics(),
                y_true=self._y,
                y_pred=self._per_sample,
                sensitive_features=self._sensitive_features,
            )
        return self._metric_frame

    def __repr__(self) -> str:
        return (
            f"ExcessRiskFrame(n_groups={self._groups.n_groups}, "
            f"fairness_violation={self.fairness_violation:.4g})\n{self._by_group}"
        )


# --------------------------------------------------------------------------------------------
# scorers for GridSearchCV / cross_validate (sensitive_features arrive by metadata routing)
# --------------------------------------------------------------------------------------------
SCORER_METRICS = ("accuracy", "fairness_violation", "accuracy_gap", "combined")

MISSING_SCORER_FEATURES = (
    "the {metric!r} scorer needs sensitive_features: enable metadata routing with "
    "sklearn.set_config(enable_metadata_routing=True) and pass sensitive_features=A to "
    "GridSearchCV.fit / cross_validate(params=...), or call scorer(estimator, X, y, "
    "sensitive_features=A)"
)


def _final_step(estimator: Any, X: Any) -> tuple[Any, Any]:
    """The last step of a Pipeline and X transformed by the steps before it."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        return estimator[-1], estimator[:-1].transform(X)
    return estimator, X


class PruningScorer:
    """A scorer for ``GridSearchCV``/``cross_validate`` that audits the (pruned) net it scores.

    Greater is better, as for every sklearn scorer: violations are returned negated.
    ``sensitive_features`` is requested for ``score`` by default, so with metadata routing
    enabled it reaches the scorer from ``GridSearchCV.fit(X, y, sensitive_features=A)``.

    Parameters
    ----------
    metric : {"accuracy", "fairness_violation", "accuracy_gap", "combined"}
        ``accuracy`` of the net; ``fairness_violation`` −ξ (eq. 3) of the pruned net against its
        dense reference (0 for a net that was never pruned: it is its own reference);
        ``accuracy_gap`` −(max − min group accuracy); ``combined`` accuracy − weight·ξ.
    weight : float, default=1.0
        Weight of ξ in ``combined``.
    """

    def __init__(self, metric: str, *, weight: float = 1.0) -> None:
        if metric not in SCORER_METRICS:
            raise ValueError(f"metric must be one of {SCORER_METRICS}; got {metric!r}")
        self.metric = metric
        self.weight = weight
        self._sensitive_features_request: bool | str | None = True

    def set_score_request(self, *, sensitive_features: bool | str | None = True) -> PruningScorer:
        """Request (True), refuse (False) or alias (a str) ``sensitive_features`` for scoring."""
        self._sensitive_features_request = sensitive_features
        return self

    def get_metadata_routing(self) -> MetadataRequest:
        """sklearn's routing request: ``score`` consumes ``sensitive_features``."""
        request = MetadataRequest(owner=self)
        request.score.add_request(
            param="sensitive_features", alias=self._sensitive_features_request
        )
        return request

    def __call__(self, estimator: Any, X: Any, y: Any, sensitive_features: Any = None) -> float:
        net, Xt = _final_step(estimator, X)
        if sensitive_features is None:
            if self.metric != "accuracy":
                raise ValueError(MISSING_SCORER_FEATURES.format(metric=self.metric))
            return float(np.mean(net.predict(Xt) == np.asarray(y).ravel()))
        pruned = getattr(net, "dense_state_dict_", None) is not None
        frame = ExcessRiskFrame(
            net, Xt, y, sensitive_features=sensitive_features, reference=None if pruned else net
        )
        accuracy = float(frame.overall["accuracy_pruned"])
        if self.metric == "accuracy":
            return accuracy
        if self.metric == "fairness_violation":
            return -frame.fairness_violation
        if self.metric == "accuracy_gap":
            return -frame.accuracy_gap
        return accuracy - self.weight * frame.fairness_violation

    def __repr__(self) -> str:
        weight = f", weight={self.weight}" if self.metric == "combined" else ""
        return f"PruningScorer({self.metric!r}{weight})"


def make_pruning_scorer(metric: str = "combined", *, weight: float = 1.0) -> PruningScorer:
    """A :class:`PruningScorer` (see there); ``combined`` is accuracy − weight · ξ."""
    return PruningScorer(metric, weight=weight)


def pruning_scorers(weight: float = 1.0) -> dict[str, PruningScorer]:
    """All four scorers, for multi-metric ``scoring=`` (``refit`` picks the one to select on)."""
    return {
        "accuracy": PruningScorer("accuracy"),
        "neg_fairness_violation": PruningScorer("fairness_violation"),
        "neg_accuracy_gap": PruningScorer("accuracy_gap"),
        "combined": PruningScorer("combined", weight=weight),
    }
