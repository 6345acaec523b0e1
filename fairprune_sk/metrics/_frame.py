"""``ExcessRiskFrame``: the one per-group audit table of a pruned net against its dense reference.

Everything is computed once, in the constructor, from one forward pass per model: five
per-sample columns (dense and pruned cross-entropy, dense and pruned correctness, whether the
predicted class flipped), aggregated per group with ``bincount``. Every derived number —
R(a) (eq. 2), ξ (eq. 3), the excess accuracy gap ψ_g, flip rates — and, with ``n_boot``, its
percentile-bootstrap interval comes from the same arrays through the same column function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._bootstrap import bootstrap_group_sums, check_bootstrap_params, quantiles
from ._groups import _as_frame, _check_proba, encode_labels, group_codes, per_sample_log_loss

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

NO_PRUNED_PROBA = (
    "{what} needs the pruned net's class probabilities; this frame was built from_outputs "
    "with proba_pruned=None (only correctness was given)"
)
NOT_BOOTSTRAPPED = (
    "{what} needs bootstrap intervals: build the frame with n_boot (e.g. n_boot=1000, "
    "ci_quantiles=[0.025, 0.975])"
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


def _check_method(method: str) -> str:
    if method not in COMPARE_METHODS:
        raise ValueError(f"method must be one of {COMPARE_METHODS}; got {method!r}")
    return method


class ExcessRiskFrame:
    """Per-group audit of a pruned net against its dense reference, in fairlearn's vocabulary.

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
    n_boot : int >= 1, optional
        Number of bootstrap resamples of the evaluation rows, as in fairlearn's
        ``MetricFrame``. Set it to get ``by_group_ci``, ``overall_ci`` and the ``*_ci()``
        methods. The intervals reflect the sampling of the *evaluation* rows for these fixed
        nets; they do not include the noise of training (use several seeds for that).
    ci_quantiles : sequence of float in (0, 1), optional
        Quantiles of the percentile bootstrap, increasing. Default with ``n_boot``:
        ``(0.025, 0.975)``, a 95 % interval (fairlearn requires both arguments).
    random_state : None, int or numpy.random.Generator, optional
        Seed of the resamples; the same seed gives the same intervals.

    Attributes
    ----------
    by_group : pandas.DataFrame
        One row per group, columns :data:`FRAME_COLUMNS`: ``count``, ``loss_dense``,
        ``loss_pruned``, ``excess_risk`` R(a) (eq. 2), ``accuracy_dense``, ``accuracy_pruned``,
        ``accuracy_drop``, ``excess_accuracy_gap`` ψ_g and ``flip_rate``.
    overall : pandas.Series
        The same quantities over all samples (``excess_accuracy_gap`` is 0 by definition).
    fairness_violation : float
        ξ of eq. (3), ``max_a R(a) − min_a R(a)``, equal to ``difference()["excess_risk"]``.
    max_excess_accuracy_gap : float
        ``max_g ψ_g`` (Balancing Act's CEAG metric).
    accuracy_gap : float
        Max − min group accuracy of the pruned net.
    worst_group_accuracy : float
        Accuracy of the pruned net on its worst group.
    by_group_ci, overall_ci : list of DataFrame / Series
        With ``n_boot``: one frame (series) per quantile, aligned with ``by_group``
        (``overall``).

    Examples
    --------
    >>> frame = ExcessRiskFrame(net, X_test, y_test, sensitive_features=race,
    ...                         n_boot=1000, random_state=0)                   # doctest: +SKIP
    >>> frame.by_group[["excess_risk", "excess_accuracy_gap"]]                  # doctest: +SKIP
    >>> low, high = frame.difference_ci()                                       # doctest: +SKIP
    >>> low["excess_risk"], frame.fairness_violation, high["excess_risk"]       # doctest: +SKIP
    """

    def __init__(
        self,
        net: Any,
        X: Any,
        y: Any,
        *,
        sensitive_features: Any,
        reference: Any = None,
        n_boot: int | None = None,
        ci_quantiles: Sequence[float] | None = None,
        random_state: Any = None,
    ) -> None:
        check_bootstrap_params(n_boot, ci_quantiles)
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
        n_samples = len(np.asarray(y).ravel())
        proba_pruned = _check_proba(net.predict_proba(X), n_samples, "net.predict_proba(X)")
        proba_dense = _check_proba(
            reference.predict_proba(X), n_samples, "reference.predict_proba(X)"
        )
        self._build(
            y, proba_dense, proba_pruned, None, sensitive_features=sensitive_features,
            classes=classes, n_boot=n_boot, ci_quantiles=ci_quantiles, random_state=random_state,
        )

    @classmethod
    def from_outputs(
        cls,
        y: Any,
        proba_dense: Any,
        proba_pruned: Any = None,
        *,
        sensitive_features: Any,
        classes: Any = None,
        correct_pruned: Any = None,
        n_boot: int | None = None,
        ci_quantiles: Sequence[float] | None = None,
        random_state: Any = None,
    ) -> ExcessRiskFrame:
        """The frame from outputs a caller already holds (no model is called).

        Parameters
        ----------
        y : array-like of shape (n_samples,)
            True labels.
        proba_dense : array-like of shape (n_samples, n_classes)
            Class probabilities of the dense net θ*, columns in the order of ``classes``.
        proba_pruned : array-like of shape (n_samples, n_classes), optional
            Class probabilities of the pruned (or mitigated) model. None for a model without
            probabilities (e.g. a randomised ``ThresholdOptimizer``): then ``correct_pruned``
            is required, and the loss columns, R(a), ξ and flip rates are NaN.
        sensitive_features : array-like, Series or DataFrame
            Group membership.
        classes : array-like of shape (n_classes,), optional
            Labels of the probability columns; ``np.unique(y)`` if None.
        correct_pruned : array-like of shape (n_samples,), optional
            Per-sample (expected) correctness of the pruned model in [0, 1], replacing
            ``argmax(proba_pruned) == y`` — for randomised classifiers, whose expected
            accuracy is the mean of their probability of the true label's prediction.
        n_boot, ci_quantiles, random_state
            As in the constructor.

        Returns
        -------
        ExcessRiskFrame
        """
        check_bootstrap_params(n_boot, ci_quantiles)
        y_arr = np.asarray(y).ravel()
        classes = np.unique(y_arr) if classes is None else np.asarray(classes)
        n_samples = len(y_arr)
        proba_dense = _check_proba(proba_dense, n_samples, "proba_dense")
        if proba_pruned is None and correct_pruned is None:
            raise ValueError("from_outputs needs proba_pruned, correct_pruned, or both")
        if proba_pruned is not None:
            proba_pruned = _check_proba(proba_pruned, n_samples, "proba_pruned")
        if correct_pruned is not None:
            correct_pruned = np.asarray(correct_pruned, dtype=np.float64).ravel()
            if len(correct_pruned) != n_samples:
                raise ValueError(
                    f"correct_pruned has {len(correct_pruned)} values but y has {n_samples}"
                )
            slack = 1e-6  # expected correctness of a mixture is a float sum: allow rounding
            if np.any((correct_pruned < -slack) | (correct_pruned > 1 + slack)):
                raise ValueError("correct_pruned must lie in [0, 1] (per-sample correctness)")
            correct_pruned = np.clip(correct_pruned, 0.0, 1.0)
        frame = cls.__new__(cls)
        frame._build(
            y_arr, proba_dense, proba_pruned, correct_pruned,
            sensitive_features=sensitive_features, classes=classes, n_boot=n_boot,
            ci_quantiles=ci_quantiles, random_state=random_state,
        )
        return frame

    # ------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------
    def _build(
        self,
        y: Any,
        proba_dense: np.ndarray,
        proba_pruned: np.ndarray | None,
        correct_pruned: np.ndarray | None,
        *,
        sensitive_features: Any,
        classes: np.ndarray,
        n_boot: int | None,
        ci_quantiles: Sequence[float] | None,
        random_state: Any,
    ) -> None:
        n_boot, ci_quantiles = check_bootstrap_params(n_boot, ci_quantiles)
        y = np.asarray(y).ravel()
        self._groups = group_codes(sensitive_features, len(y))
        self._sensitive = _as_frame(sensitive_features)
        y_index = encode_labels(y, classes)
        proba_dense = np.asarray(proba_dense, dtype=np.float64)
        pred_dense = proba_dense.argmax(axis=1)
        if proba_pruned is None:
            pred_pruned = None
            loss_pruned = np.full(len(y), np.nan)
            flipped = np.full(len(y), np.nan)
        else:
            proba_pruned = np.asarray(proba_pruned, dtype=np.float64)
            pred_pruned = proba_pruned.argmax(axis=1)
            loss_pruned = per_sample_log_loss(proba_pruned, y_index)
            flipped = (pred_pruned != pred_dense).astype(np.float64)
        if correct_pruned is None:
            correct_pruned = (pred_pruned == y_index).astype(np.float64)
        self._per_sample = np.column_stack(
            [
                per_sample_log_loss(proba_dense, y_index),
                loss_pruned,
                (pred_dense == y_index).astype(np.float64),
                correct_pruned,
                flipped,
            ]
        )
        self._y = y
        self._classes = classes
        self._y_index = y_index
        self._pred_dense = pred_dense
        self._pred_pruned = pred_pruned
        self._confidence_dense = proba_dense.max(axis=1)
        self._sensitive_features = sensitive_features

        counts = np.bincount(self._groups.codes, minlength=self._groups.n_groups).astype(float)
        sums = np.stack(
            [
                np.bincount(self._groups.codes, weights=column, minlength=self._groups.n_groups)
                for column in self._per_sample.T
            ],
            axis=-1,
        )
        overall_means = self._per_sample.mean(axis=0)
        self._table = _column_table(counts, sums / counts[:, None], overall_means)
        self._overall_row = _column_table(
            np.array([float(len(y))]), overall_means[None, :], overall_means
        )[0]
        self._by_group = self._as_frame(self._table)
        self._overall = pd.Series(self._overall_row, index=list(FRAME_COLUMNS))
        self._overall["count"] = int(len(y))

        self._n_boot, self._ci_quantiles = n_boot, ci_quantiles
        self._boot_table = self._boot_overall = None
        if n_boot is not None:
            self._bootstrap(n_boot, random_state)
        self._metric_frame = None

    def _as_frame(self, table: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(table, index=self._groups.index, columns=list(FRAME_COLUMNS))
        frame["count"] = frame["count"].round().astype(np.int64)
        return frame

    def _bootstrap(self, n_boot: int, random_state: Any) -> None:
        if isinstance(random_state, np.random.RandomState):
            random_state = int(random_state.randint(np.iinfo(np.int32).max))
        small = self._by_group.index[self._by_group["count"] < 2].tolist()
        if small:
            warnings.warn(
                f"group(s) {small} have a single row: their bootstrap interval is that row's "
                "value (or NaN where a resample misses the row); collect more data for them",
                UserWarning,
                stacklevel=4,
            )
        sums, counts = bootstrap_group_sums(
            self._per_sample, self._groups.codes, self._groups.n_groups, n_boot, random_state
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts[..., None]  # NaN for a group absent from a resample
            overall_means = sums.sum(axis=1) / counts.sum(axis=1)[:, None]
        self._boot_table = _column_table(counts, means, overall_means)
        self._boot_overall = _column_table(
            counts.sum(axis=1)[:, None], overall_means[:, None, :], overall_means
        )[:, 0]
        absent = np.isnan(means[..., 2]).mean(axis=0)
        rarely = [g for g in self._by_group.index[absent > 0.05] if g not in small]
        if rarely:
            warnings.warn(
                f"group(s) {rarely} are missing from more than 5 % of the bootstrap resamples; "
                "their intervals use the resamples that contain them",
                UserWarning,
                stacklevel=4,
            )

    # ------------------------------------------------------------------------------------------
    # MetricFrame vocabulary
    # ------------------------------------------------------------------------------------------
    @property
    def by_group(self) -> pd.DataFrame:
        """Per-group table (a copy), columns :data:`FRAME_COLUMNS`."""
        return self._by_group.copy()

    @property
    def overall(self) -> pd.Series:
        """The same quantities over all samples (a copy)."""
        return self._overall.copy()

    def group_min(self) -> pd.Series:
        """Smallest value of each column across groups."""
        return self._reduced("min", "between_groups")

    def group_max(self) -> pd.Series:
        """Largest value of each column across groups."""
        return self._reduced("max", "between_groups")

    def difference(self, method: str = "between_groups") -> pd.Series:
        """Max − min across groups, or (``to_overall``) max |group − overall|."""
        return self._reduced("difference", _check_method(method))

    def ratio(self, method: str = "between_groups") -> pd.Series:
        """Min / max across groups, or (``to_overall``) the smallest group/overall ratio."""
        return self._reduced("ratio", _check_method(method))

    def _reduced(self, kind: str, method: str) -> pd.Series:
        values = _group_reduce(self._table, self._overall_row, kind, method)
        return pd.Series(values, index=list(FRAME_COLUMNS))

    @property
    def fairness_violation(self) -> float:
        """ξ, eq. (3): ``max_{a,a'} |R(a) − R(a')|``."""
        return float(self.difference()["excess_risk"])

    @property
    def max_excess_accuracy_gap(self) -> float:
        """``max_g ψ_g``: the most extra accuracy any group lost (Balancing Act, ICLR 2024)."""
        return float(self._by_group["excess_accuracy_gap"].max())

    @property
    def accuracy_gap(self) -> float:
        """Max − min group accuracy of the pruned net."""
        return float(self.difference()["accuracy_pruned"])

    @property
    def worst_group_accuracy(self) -> float:
        """Accuracy of the pruned net on its worst group."""
        return float(self._by_group["accuracy_pruned"].min())

    # ------------------------------------------------------------------------------------------
    # bootstrap intervals (fairlearn's *_ci names)
    # ------------------------------------------------------------------------------------------
    @property
    def n_boot(self) -> int | None:
        """Number of bootstrap resamples (None: no intervals)."""
        return self._n_boot

    @property
    def ci_quantiles(self) -> tuple[float, ...] | None:
        """Quantiles of the intervals (None: no intervals)."""
        return self._ci_quantiles

    def _check_bootstrapped(self, what: str) -> None:
        if self._boot_table is None:
            raise ValueError(NOT_BOOTSTRAPPED.format(what=what))

    @property
    def by_group_ci(self) -> list[pd.DataFrame]:
        """One frame per quantile in ``ci_quantiles``, aligned with ``by_group``."""
        self._check_bootstrapped("by_group_ci")
        return [self._as_frame(q) for q in quantiles(self._boot_table, self._ci_quantiles)]

    @property
    def overall_ci(self) -> list[pd.Series]:
        """One series per quantile in ``ci_quantiles``, aligned with ``overall``."""
        self._check_bootstrapped("overall_ci")
        return [
            pd.Series(q, index=list(FRAME_COLUMNS))
            for q in quantiles(self._boot_overall, self._ci_quantiles)
        ]

    def _reduced_ci(self, kind: str, method: str) -> list[pd.Series]:
        self._check_bootstrapped(f"{kind}_ci" if kind in ("difference", "ratio") else
                                 f"group_{kind}_ci")
        samples = _group_reduce(self._boot_table, self._boot_overall, kind, method)
        return [pd.Series(q, index=list(FRAME_COLUMNS))
                for q in quantiles(samples, self._ci_quantiles)]

    def group_min_ci(self) -> list[pd.Series]:
        """Intervals of :meth:`group_min`, one series per quantile."""
        return self._reduced_ci("min", "between_groups")

    def group_max_ci(self) -> list[pd.Series]:
        """Intervals of :meth:`group_max`, one series per quantile (``excess_accuracy_gap``:
        the interval of max ψ)."""
        return self._reduced_ci("max", "between_groups")

    def difference_ci(self, method: str = "between_groups") -> list[pd.Series]:
        """Intervals of :meth:`difference`, one series per quantile (``excess_risk``: ξ's)."""
        return self._reduced_ci("difference", _check_method(method))

    def ratio_ci(self, method: str = "between_groups") -> list[pd.Series]:
        """Intervals of :meth:`ratio`, one series per quantile."""
        return self._reduced_ci("ratio", _check_method(method))

    def by_group_with_ci(self, columns: Sequence[str] = ("excess_risk", "excess_accuracy_gap",
                                                         "accuracy_drop")) -> pd.DataFrame:
        """``by_group`` plus ``<column>_ci_low`` / ``<column>_ci_high`` for ``columns``.

        The bounds are the first and last of ``ci_quantiles``. Without ``n_boot`` this is
        ``by_group`` unchanged.
        """
        table = self.by_group
        if self._boot_table is None:
            return table
        unknown = [c for c in columns if c not in FRAME_COLUMNS]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; the frame has {list(FRAME_COLUMNS)}")
        intervals = self.by_group_ci
        for column in columns:
            position = table.columns.get_loc(column) + 1
            table.insert(position, f"{column}_ci_low", intervals[0][column])
            table.insert(position + 1, f"{column}_ci_high", intervals[-1][column])
        return table

    def separated_pairs(
        self, column: str = "excess_risk", *, simultaneous: bool = False
    ) -> pd.DataFrame:
        """Pairs of groups whose intervals of ``column`` do not overlap.

        A conservative test of a real disparity: group ``higher``'s lower bound lies above group
        ``lower``'s upper bound.

        Parameters
        ----------
        column : str, default="excess_risk"
            A column of :data:`FRAME_COLUMNS`.
        simultaneous : bool, default=False
            False: the intervals of ``ci_quantiles`` (first and last). True: Bonferroni-adjusted
            intervals that hold for all ``G`` groups at once — quantiles ``α / (2G)`` and
            ``1 − α / (2G)`` of the same resamples, with ``1 − α`` the coverage of
            ``ci_quantiles`` — so that comparing many groups does not find separations by
            chance.

        Returns
        -------
        pandas.DataFrame
            Columns ``higher``, ``lower``, ``higher_low``, ``lower_high``, ``margin``; largest
            margin first; empty when every pair of intervals overlaps.
        """
        self._check_bootstrapped("separated_pairs")
        if column not in FRAME_COLUMNS:
            raise ValueError(f"unknown column {column!r}; the frame has {list(FRAME_COLUMNS)}")
        if simultaneous:
            alpha = 1.0 - (self._ci_quantiles[-1] - self._ci_quantiles[0])
            tail = alpha / (2 * self._groups.n_groups)
            samples = self._boot_table[..., FRAME_COLUMNS.index(column)]
            low, high = quantiles(samples, (tail, 1.0 - tail))
        else:
            intervals = self.by_group_ci
            low = intervals[0][column].to_numpy()
            high = intervals[-1][column].to_numpy()
        above = low[:, None] > high[None, :]
        rows, cols = np.nonzero(above)
        labels = list(self._groups.index)
        table = pd.DataFrame(
            {
                "higher": [labels[i] for i in rows],
                "lower": [labels[j] for j in cols],
                "higher_low": low[rows],
                "lower_high": high[cols],
                "margin": low[rows] - high[cols],
            }
        )
        return table.sort_values("margin", ascending=False, ignore_index=True)

    # ------------------------------------------------------------------------------------------
    # pruning-identified exemplars (Hooker et al. 2019)
    # ------------------------------------------------------------------------------------------
    def pruning_identified_exemplars(self) -> pd.DataFrame:
        """The rows whose predicted class changed with pruning, most confident dense first.

        Hooker et al. (2019), *What do compressed deep neural networks forget?*, call them
        pruning-identified exemplars: the examples a pruned net gives up on.

        Returns
        -------
        pandas.DataFrame
            One row per flipped prediction: ``position`` (row of the evaluation data), one
            column per sensitive feature, ``y_true``, ``pred_dense``, ``pred_pruned``,
            ``confidence_dense`` (the dense net's top probability), ``dense_correct`` and
            ``pruned_correct``; sorted by ``confidence_dense``, highest first.
        """
        if self._pred_pruned is None:
            raise ValueError(NO_PRUNED_PROBA.format(what="pruning_identified_exemplars()"))
        flipped = np.flatnonzero(self._pred_pruned != self._pred_dense)
        table = pd.DataFrame({"position": flipped})
        for name in self._sensitive.columns:
            table[name] = self._sensitive[name].to_numpy()[flipped]
        table["y_true"] = self._y[flipped]
        table["pred_dense"] = self._classes[self._pred_dense[flipped]]
        table["pred_pruned"] = self._classes[self._pred_pruned[flipped]]
        table["confidence_dense"] = self._confidence_dense[flipped]
        table["dense_correct"] = self._pred_dense[flipped] == self._y_index[flipped]
        table["pruned_correct"] = self._pred_pruned[flipped] == self._y_index[flipped]
        return table.sort_values(
            ["confidence_dense", "position"], ascending=[False, True], ignore_index=True,
            kind="stable",
        )

    # ------------------------------------------------------------------------------------------
    # fairlearn and plotting
    # ------------------------------------------------------------------------------------------
    @property
    def metric_frame(self):
        """A real ``fairlearn.metrics.MetricFrame`` with the per-group columns (built on use).

        Its ``y_pred`` stacks the per-sample columns :data:`PER_SAMPLE_COLUMNS`, so its
        ``difference()["excess_risk"]`` is ξ. ψ_g is a difference to the overall accuracy drop,
        which a per-group metric cannot see: read it as
        ``by_group["accuracy_drop"] - overall["accuracy_drop"]``. Building it costs fairlearn's
        per-row grouping.
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

    def plot(self, column: str = "excess_risk", *, ax: Any = None, sort: bool | str = True) -> Any:
        """Horizontal bars of ``column`` per group, with the bootstrap interval when there is one.

        Parameters
        ----------
        column : str, default="excess_risk"
            One of :data:`FRAME_COLUMNS` but ``count``.
        ax : matplotlib Axes, optional
            Where to draw; a new figure if None.
        sort : bool or str, default=True
            True: largest value of ``column`` on top; a column name: order by that column (so
            two panels side by side share one order); False: the order of ``by_group``.

        Returns
        -------
        matplotlib.axes.Axes
        """
        from ._plot import plot_by_group

        if column not in FRAME_COLUMNS or column == "count":
            raise ValueError(
                f"column must be one of {list(FRAME_COLUMNS[1:])}; got {column!r}"
            )
        if isinstance(sort, str) and sort not in FRAME_COLUMNS:
            raise ValueError(f"sort must be a bool or one of {list(FRAME_COLUMNS)}; got {sort!r}")
        intervals = None
        if self._boot_table is not None:
            ci = self.by_group_ci
            intervals = (ci[0][column], ci[-1][column])
        return plot_by_group(
            self._by_group, column, intervals=intervals, overall=self._overall[column],
            description=COLUMN_DESCRIPTIONS[column], ax=ax, sort=sort,
            quantiles=self._ci_quantiles,
        )

    def __repr__(self) -> str:
        return (
            f"ExcessRiskFrame(n_groups={self._groups.n_groups}, "
            f"fairness_violation={self.fairness_violation:.4g}, "
            f"max_excess_accuracy_gap={self.max_excess_accuracy_gap:.4g}, "
            f"n_boot={self._n_boot})\n{self._by_group}"
        )


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
