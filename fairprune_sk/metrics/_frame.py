"""``ExcessRiskFrame``: the one per-group audit table of a pruned net against its dense reference.

Everything is computed once, in the constructor, from one forward pass per model: five
per-sample columns (dense and pruned cross-entropy, dense and pruned correctness, whether the
predicted class flipped), aggregated per group with ``bincount``. Every derived number —
R(a) (eq. 2), ξ (eq. 3), the excess accuracy gap ψ_g, flip rates — and, with ``n_boot``, its
percentile-bootstrap interval comes from the same arrays through the same column function.

The columns and their reductions across groups live in :mod:`._columns`, the bootstrap
intervals (the ``*_ci`` names) in :mod:`._frame_intervals`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import HasMethods, StrOptions, validate_params

from ._bootstrap import BOOTSTRAP_CONSTRAINTS, check_bootstrap_params
from ._columns import (
    COLUMN_DESCRIPTIONS,
    FRAME_COLUMNS,
    METHOD_CONSTRAINTS,
    _column_table,
    _SampleColumns,
    _frame_metrics,
    _group_reduce,
)
from ._frame_intervals import FrameIntervalsMixin
from ._groups import _as_frame, group_codes
from ._proba import check_proba, encode_y, resolve_classes

__all__ = ["ExcessRiskFrame"]

NO_PRUNED_PROBA = (
    "{what} needs the pruned net's class probabilities; this frame was built from_outputs "
    "with proba_pruned=None (only correctness was given)"
)


class ExcessRiskFrame(FrameIntervalsMixin):
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
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
    >>> from fairprune_sk.models import MLP
    >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    >>> X = X.astype(np.float32)
    >>> group = np.where(X[:, 0] > 0, "a", "b")
    >>> net = PrunableNetClassifier(MLP, max_epochs=10, lr=0.1, verbose=0, random_state=0)
    >>> net = net.fit(X, y).prune(0.5)
    >>> frame = ExcessRiskFrame(net, X, y, sensitive_features=group,
    ...                         n_boot=200, random_state=0)
    >>> frame.by_group["count"].to_dict()
    {'a': 110, 'b': 90}
    >>> xi = frame.fairness_violation  # eq. (3)
    >>> bool(xi == frame.difference()["excess_risk"])
    True
    >>> low, high = frame.difference_ci()  # 95 % percentile-bootstrap interval of xi
    >>> bool(low["excess_risk"] <= xi <= high["excess_risk"])
    True
    """

    @validate_params(
        {
            "net": [HasMethods(["predict_proba"])],
            "X": ["array-like", "sparse matrix"],
            "y": ["array-like"],
            "sensitive_features": ["array-like"],
            "reference": [HasMethods(["predict_proba"]), None],
            **BOOTSTRAP_CONSTRAINTS,
        },
        prefer_skip_nested_validation=False,  # the models validate their own parameters
    )
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
        n_boot, ci_quantiles = check_bootstrap_params(
            n_boot, ci_quantiles, caller_name="ExcessRiskFrame.__init__"
        )
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
        proba_pruned = check_proba(net.predict_proba(X), "net.predict_proba(X)",
                                   n_samples=len(y), n_classes=len(classes))
        proba_dense = check_proba(reference.predict_proba(X), "reference.predict_proba(X)",
                                  n_samples=len(y), n_classes=len(classes))
        y_index = encode_y(y, classes, name="net.classes_")
        self._build(
            y, y_index, _SampleColumns.of(y_index, proba_dense, proba_pruned),
            sensitive_features=sensitive_features, classes=classes, n_boot=n_boot,
            ci_quantiles=ci_quantiles, random_state=random_state,
        )

    @classmethod
    @validate_params(
        {
            "y": ["array-like"],
            "proba_dense": ["array-like"],
            "proba_pruned": ["array-like", None],
            "sensitive_features": ["array-like"],
            "classes": ["array-like", None],
            "correct_pruned": ["array-like", None],
            **BOOTSTRAP_CONSTRAINTS,
        },
        prefer_skip_nested_validation=True,
    )
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
            True labels, each one of ``classes``.
        proba_dense : array-like of shape (n_samples, n_classes)
            Class probabilities of the dense net θ*, columns in the order of ``classes``:
            finite, in [0, 1], every row summing to 1 within a relative tolerance of
            ``sqrt(eps)`` of float32 (about 3.5e-4, sklearn's ``log_loss`` tolerance for float32
            probabilities, applied to every dtype).
        proba_pruned : array-like of shape (n_samples, n_classes), optional
            Class probabilities of the pruned (or mitigated) model, checked as
            ``proba_dense``. None for a model without
            probabilities (e.g. a randomised ``ThresholdOptimizer``): then ``correct_pruned``
            is required, and the loss columns, R(a), ξ and flip rates are NaN.
        sensitive_features : array-like, Series or DataFrame
            Group membership.
        classes : array-like of shape (n_classes,), optional
            Labels of the probability columns, in column order (one per column). If None,
            ``np.unique(y)``, which is only allowed when ``y`` holds every class: a ``y``
            lacking a class needs ``classes`` to say which column is which.
        correct_pruned : array-like of shape (n_samples,), optional
            Per-sample (expected) correctness of the pruned model in [0, 1], replacing
            ``argmax(proba_pruned) == y`` — for randomised classifiers, whose expected
            accuracy is the mean of their probability of the true label's prediction.
        n_boot, ci_quantiles, random_state
            As in the constructor.

        Returns
        -------
        ExcessRiskFrame

        Raises
        ------
        ValueError
            Before any work, if a probability matrix is not numeric, finite, in [0, 1], with
            rows summing to 1 and one row per label of ``y`` and one column per class; if
            ``classes`` does not have one distinct label per column; if ``y`` holds a label
            that is not in ``classes``; or if ``classes`` is None and ``y`` does not hold
            exactly one label per column.

        Examples
        --------
        Group ``a`` loses more log-likelihood to pruning than group ``b``, though both lose a
        third of their accuracy:

        >>> from fairprune_sk import ExcessRiskFrame
        >>> y = [0, 0, 1, 1, 1, 0]
        >>> dense = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.7, 0.3]]
        >>> pruned = [[0.6, 0.4], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2]]
        >>> frame = ExcessRiskFrame.from_outputs(
        ...     y, dense, pruned, sensitive_features=["a", "a", "a", "b", "b", "b"])
        >>> frame.by_group[["count", "excess_risk", "accuracy_drop"]].round(3)
                             count  excess_risk  accuracy_drop
        sensitive_feature_0
        a                        3        0.366          0.333
        b                        3        0.091          0.333
        >>> round(frame.fairness_violation, 3)
        0.276
        >>> frame.pruning_identified_exemplars()[["position", "y_true", "pred_pruned"]]
           position  y_true  pred_pruned
        0         1       0            1
        1         4       1            0
        """
        n_boot, ci_quantiles = check_bootstrap_params(
            n_boot, ci_quantiles, caller_name="ExcessRiskFrame.from_outputs"
        )
        y_arr = np.asarray(y).ravel()
        n_samples = len(y_arr)
        if proba_pruned is None and correct_pruned is None:
            raise ValueError("from_outputs needs proba_pruned, correct_pruned, or both")
        proba_dense = check_proba(proba_dense, "proba_dense", n_samples=n_samples, n_classes=None)
        classes = resolve_classes(
            classes, y_arr, proba_dense.shape[1], name="classes", proba_name="proba_dense"
        )
        if proba_pruned is not None:
            proba_pruned = check_proba(
                proba_pruned, "proba_pruned", n_samples=n_samples, n_classes=len(classes)
            )
        if correct_pruned is not None:
            correct_pruned = np.asarray(correct_pruned, dtype=np.float64).ravel()
            if len(correct_pruned) != n_samples:
                raise ValueError(
                    f"correct_pruned has {len(correct_pruned)} values but y has {n_samples}"
                )
            slack = 1e-6  # expected correctness of a mixture is a float sum: allow rounding
            if not np.all((correct_pruned >= -slack) & (correct_pruned <= 1 + slack)):
                raise ValueError("correct_pruned must lie in [0, 1] (per-sample correctness)")
            correct_pruned = np.clip(correct_pruned, 0.0, 1.0)
        y_index = encode_y(y_arr, classes, name="classes")
        frame = cls.__new__(cls)
        frame._build(
            y_arr, y_index, _SampleColumns.of(y_index, proba_dense, proba_pruned, correct_pruned),
            sensitive_features=sensitive_features, classes=classes, n_boot=n_boot,
            ci_quantiles=ci_quantiles, random_state=random_state,
        )
        return frame

    # ------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------
    def _build(
        self,
        y: np.ndarray,
        y_index: np.ndarray,
        columns: _SampleColumns,
        *,
        sensitive_features: Any,
        classes: np.ndarray,
        n_boot: int | None,
        ci_quantiles: tuple[float, ...] | None,
        random_state: Any,
    ) -> None:
        self._groups = group_codes(sensitive_features, len(y))
        self._sensitive = _as_frame(sensitive_features)
        self._per_sample = columns.values
        self._y = y
        self._classes = classes
        self._y_index = y_index
        self._pred_dense = columns.pred_dense
        self._pred_pruned = columns.pred_pruned
        self._confidence_dense = columns.confidence_dense
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

    @validate_params(METHOD_CONSTRAINTS, prefer_skip_nested_validation=True)
    def difference(self, method: str = "between_groups") -> pd.Series:
        """Max − min across groups, or (``to_overall``) max |group − overall|."""
        return self._reduced("difference", method)

    @validate_params(METHOD_CONSTRAINTS, prefer_skip_nested_validation=True)
    def ratio(self, method: str = "between_groups") -> pd.Series:
        """Min / max across groups, or (``to_overall``) the smallest group/overall ratio."""
        return self._reduced("ratio", method)

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

        Its ``y_pred`` stacks the per-sample columns
        :data:`~fairprune_sk.metrics.PER_SAMPLE_COLUMNS`, so its ``difference()["excess_risk"]``
        is ξ. ψ_g is a difference to the overall accuracy drop, which a per-group metric cannot
        see: read it as ``by_group["accuracy_drop"] - overall["accuracy_drop"]``. Building it
        costs fairlearn's per-row grouping.
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

    @validate_params(
        {
            "column": [StrOptions(set(FRAME_COLUMNS[1:]))],
            "ax": "no_validation",
            "sort": ["boolean", StrOptions(set(FRAME_COLUMNS))],
        },
        prefer_skip_nested_validation=True,
    )
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

