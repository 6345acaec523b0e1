"""``ExcessRiskFrame``: the one per-group audit table of a compressed model against its dense
reference.

Everything is computed once, in the constructor, from one forward pass per model: five
per-sample columns (dense and pruned cross-entropy, dense and pruned correctness, whether the
predicted class flipped), aggregated per group with ``bincount``. Every derived number —
R(a) (eq. 2), ξ (eq. 3), the excess accuracy gap ψ_g, flip rates — and, with ``n_boot``, its
percentile-bootstrap interval comes from the same arrays through the same column function.

The models' probabilities come from :mod:`._outputs`, a streamed torch ``Dataset`` is reduced
batch by batch in :mod:`._stream`, the probabilities are checked in :mod:`._proba`; the columns
and their reductions across groups live in :mod:`._columns`, the bootstrap intervals (the
``*_ci`` names) in :mod:`._frame_intervals`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_parameter_constraints,
)

from ._bootstrap import BOOTSTRAP_CONSTRAINTS, check_bootstrap_params
from ._columns import (
    COLUMN_DESCRIPTIONS,
    FRAME_COLUMNS,
    INTERVAL_COLUMNS,
    METHOD_CONSTRAINTS,
    _column_table,
    _frame_metrics,
    _group_reduce,
    _SampleColumns,
)
from ._frame_intervals import FrameIntervalsMixin
from ._groups import _as_frame, group_codes
from ._proba import check_proba, encode_y, resolve_classes

__all__ = ["ExcessRiskFrame"]

NO_PRUNED_PROBA = (
    "{what} needs the pruned net's class probabilities; this frame was built from_outputs "
    "with proba_pruned=None (only correctness was given)"
)


def _constructor_constraints() -> dict[str, list[Any]]:
    """``validate_parameter_constraints`` constraints of the constructor's arguments."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    return {
        "model": [HasMethods(["predict_proba"]), torch.nn.Module],
        "X": ["array-like", "sparse matrix", Dataset, DataLoader],
        "y": ["array-like", None],
        "sensitive_features": ["array-like", str],
        "reference": [HasMethods(["predict_proba"]), torch.nn.Module, None],
        "classes": ["array-like", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
        "random_state": BOOTSTRAP_CONSTRAINTS["random_state"],
    }


class ExcessRiskFrame(FrameIntervalsMixin):
    """Per-group audit of a compressed model against its dense reference, in fairlearn's
    vocabulary.

    "Pruned" in the column names means any compressed model: pruned by us, by
    ``torch.nn.utils.prune`` or Torch-Pruning, quantized, or anything else; the audit only
    compares two models' class probabilities on the same data.

    Parameters
    ----------
    model : fitted classifier or torch.nn.Module
        The compressed model θ̂, one of:

        - one of our nets (:class:`~fairprune_sk.PrunableNetClassifier`,
          :class:`~fairprune_sk.FairConstrainedNet`) or another fitted skorch
          ``NeuralNetClassifier``; a net of ours that was pruned keeps its dense reference θ*,
          used when ``reference`` is None;
        - any fitted classifier with ``predict_proba`` and ``classes_`` (sklearn's, a
          ``Pipeline``);
        - a ``torch.nn.Module`` returning logits (the softmax is taken in float64; one output
          column is the logit of the second of two classes). It runs in eval mode without
          gradients, and the train / eval mode of every submodule is restored afterwards.
    X : array-like of shape (n_samples, ...), torch Dataset or DataLoader
        Evaluation data. In memory: what ``model.predict_proba`` accepts (a torch module gets
        it in batches of ``batch_size``, floating values cast to the module's dtype). A torch
        ``Dataset`` or ``DataLoader`` is streamed: both models see each batch once and only
        per-sample results are kept. Its items may be ``(x, y)``, ``x`` alone, or a dict with
        the input under ``"X"``, the label under ``"y"`` (optional) and any other fields. A
        ``Dataset`` is batched by ``batch_size`` in order; a ``DataLoader`` is used as it is
        (it must not shuffle if ``y`` or ``sensitive_features`` is given as an array). Our
        nets see it through their ``module_``, with the net's output nonlinearity, as in
        ``predict_proba``.
    y : array-like of shape (n_samples,), optional
        True labels, each one of the models' ``classes_`` (or of ``classes``). Required for
        in-memory ``X``; for a stream, None takes them from the items.
    sensitive_features : array-like, Series, DataFrame, str or tuple of str
        Group membership, one row per sample (several columns give intersectional groups), in
        the order of ``X``. With a stream of dict items, a str names the item field holding
        it, and a tuple of str several fields (intersectional groups).
    reference : fitted classifier or torch.nn.Module, optional
        The dense model θ*, any of the kinds ``model`` may be, with the same classes. Required
        unless ``model`` is a pruned net of ours; always for a torch module.
    classes : array-like of shape (n_classes,), optional
        Labels of the probability columns. Default: the models' ``classes_`` (which it must
        equal when given), or ``0 .. K-1`` for the ``K`` outputs of torch modules.
    batch_size : int >= 1, default=256
        Samples per forward pass of a torch module, and per batch of a streamed ``Dataset``.
        Nets and classifiers on in-memory data use their own batching.
    device : str or torch.device, optional
        Where torch modules compute (each is moved there for the audit and back after);
        None: where they are. Skorch nets compute on their own ``device``.
    n_boot : int >= 1, optional
        Number of bootstrap resamples of the evaluation rows, as in fairlearn's
        ``MetricFrame``. Set it to get ``by_group_ci``, ``overall_ci`` and the ``*_ci()``
        methods. The intervals reflect the sampling of the *evaluation* rows for these fixed
        models; they do not include the noise of training (use several seeds for that).
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
        (``overall``), columns :data:`INTERVAL_COLUMNS` (all but ``count``).

    Raises
    ------
    ValueError
        In sklearn's words for an argument of the wrong type or range; naming ``reference``
        when it is needed and missing; when the models' classes differ; when a model's
        probabilities are not finite, in [0, 1] and summing to 1 per row, with one column per
        class (as sklearn's ``log_loss`` checks them); when ``y`` holds a label that is not a
        class, or ``y`` and ``sensitive_features`` do not have one row per sample of ``X``.

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

    Any torch module returning logits, compressed however, against its dense original, on a
    torch ``Dataset`` of ``(x, y)`` items:

    >>> import copy
    >>> import torch
    >>> from torch.nn.utils import prune
    >>> from torch.utils.data import TensorDataset
    >>> dense = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
    ...                             torch.nn.Linear(16, 2))
    >>> small = prune.l1_unstructured(copy.deepcopy(dense)[0], "weight", amount=0.5)
    >>> compressed = torch.nn.Sequential(small, *copy.deepcopy(dense)[1:])
    >>> data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    >>> frame = ExcessRiskFrame(compressed, data, sensitive_features=group, reference=dense)
    >>> frame.by_group["count"].to_dict()
    {'a': 110, 'b': 90}
    """

    def __init__(
        self,
        model: Any,
        X: Any,
        y: Any = None,
        *,
        sensitive_features: Any,
        reference: Any = None,
        classes: Any = None,
        batch_size: int = 256,
        device: Any = None,
        n_boot: int | None = None,
        ci_quantiles: Sequence[float] | None = None,
        random_state: Any = None,
    ) -> None:
        # torch is imported here, not with the module: from_outputs does not need it
        from ._outputs import as_model, common_classes, inference
        from ._stream import is_stream, stream_columns

        validate_parameter_constraints(
            _constructor_constraints(),
            {"model": model, "X": X, "y": y, "sensitive_features": sensitive_features,
             "reference": reference, "classes": classes, "batch_size": batch_size,
             "device": device, "random_state": random_state},
            caller_name="ExcessRiskFrame",
        )
        n_boot, ci_quantiles = check_bootstrap_params(
            n_boot, ci_quantiles, caller_name="ExcessRiskFrame"
        )
        pruned = as_model(model, "model")
        dense = pruned.dense_reference() if reference is None else as_model(reference, "reference")
        classes, classes_name = common_classes(pruned, dense, classes)
        bootstrap = {"n_boot": n_boot, "ci_quantiles": ci_quantiles, "random_state": random_state}
        if is_stream(X):
            result = stream_columns(
                pruned, dense, X, y, sensitive_features=sensitive_features, classes=classes,
                classes_name=classes_name, batch_size=batch_size, device=device,
            )
            self._build(result.y, result.y_index, result.columns,
                        sensitive_features=result.sensitive_features, classes=result.classes,
                        **bootstrap)
            return
        if y is None:
            raise ValueError(
                "y is None: pass the true labels of X (only the items of a torch Dataset or "
                "DataLoader can carry them)"
            )
        if isinstance(sensitive_features, str):
            raise ValueError(
                f"sensitive_features={sensitive_features!r} names an item field, which only a "
                "torch Dataset or DataLoader of dict items has; for in-memory X pass one group "
                "label per sample"
            )
        y = np.asarray(y).ravel()
        group_codes(sensitive_features, len(y))  # a length mismatch fails before any work
        with inference([pruned, dense], device):
            proba_pruned = pruned.proba_of_array(X, batch_size)
            proba_dense = dense.proba_of_array(X, batch_size)
        n_classes = None if classes is None else len(classes)
        proba_pruned = check_proba(proba_pruned, pruned.describe(), n_samples=len(y),
                                   n_classes=n_classes)
        if classes is None:
            classes = np.arange(proba_pruned.shape[1])
        proba_dense = check_proba(proba_dense, dense.describe(), n_samples=len(y),
                                  n_classes=len(classes))
        y_index = encode_y(y, classes, name=classes_name)
        self._build(
            y, y_index, _SampleColumns.of(y_index, proba_dense, proba_pruned),
            sensitive_features=sensitive_features, classes=classes, **bootstrap,
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
        validate_parameter_constraints(
            {
                "y": ["array-like"],
                "proba_dense": ["array-like"],
                "proba_pruned": ["array-like", None],
                "sensitive_features": ["array-like"],
                "classes": ["array-like", None],
                "correct_pruned": ["array-like", None],
                "random_state": BOOTSTRAP_CONSTRAINTS["random_state"],
            },
            {"y": y, "proba_dense": proba_dense, "proba_pruned": proba_pruned,
             "sensitive_features": sensitive_features, "classes": classes,
             "correct_pruned": correct_pruned, "random_state": random_state},
            caller_name="ExcessRiskFrame.from_outputs",
        )
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

    def difference(self, method: str = "between_groups") -> pd.Series:
        """Max − min across groups, or (``to_overall``) max |group − overall|."""
        self._validate({"method": method}, METHOD_CONSTRAINTS, "difference")
        return self._reduced("difference", method)

    def ratio(self, method: str = "between_groups") -> pd.Series:
        """Min / max across groups, or (``to_overall``) the smallest group/overall ratio."""
        self._validate({"method": method}, METHOD_CONSTRAINTS, "ratio")
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

        self._validate(
            {"column": column, "sort": sort},
            {"column": [StrOptions(set(INTERVAL_COLUMNS))],
             "sort": ["boolean", StrOptions(set(FRAME_COLUMNS))]},
            "plot",
        )
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

