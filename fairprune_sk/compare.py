"""Mitigation methods side by side: same split, same net, same pruning rate, same dense θ*.

Every method ends in one final model; all of them are audited against one **common dense
reference** θ*, the dense :class:`~fairprune_sk.PrunableNetClassifier` trained with the same seed
and parameters, so the excess risk ``R(a) = J(θ̂; D_a) − J(θ*; D_a)`` (eq. 2) and the fairness
violation ``ξ = max_a R(a) − min_a R(a)`` (eq. 3) of different methods are comparable.

Methods (:data:`METHODS`):

``none``
    θ* pruned at the rate (``pruning_method``), then fine-tuned ``fine_tune_epochs`` epochs with
    the masks held. At rate 0 it is θ* itself.
``fair_before`` / ``fair_after`` / ``fair_both``
    :class:`~fairprune_sk.constrained.FairConstrainedNet` with ``constraint_phase`` ``"before"``,
    ``"after"`` or ``"both"`` (the paper's *Fair Bf*, *Fair Aft*, *Fair Both*; the target is
    ``net_params["constraint_target"]``, the paper's equal group losses by default).
``ceag`` / ``ceag_heldout``
    :class:`~fairprune_sk.constrained.FairConstrainedNet` fine-tuning under ψ_g ≤ ``tolerance``
    (``constraint_target="accuracy_gap"``, Balancing Act's CEAG, at its defaults — the
    recommended mitigation, see docs/mitigation.md); ``ceag_heldout`` measures the constraint
    for the dual steps on a 20 % group × label stratified held-out part
    (``constraint_split=0.2``, Cotter et al. 2019). Same fine-tuning budget as ``none``.
``eg``
    fairlearn's ``ExponentiatedGradient`` around a ``PrunableNetClassifier(pruning_rate=rate)``:
    every oracle call trains, prunes and fine-tunes a net. Binary labels only.
``gridsearch``
    fairlearn's ``reductions.GridSearch`` around the same estimator. Binary labels only.
``threshold``
    fairlearn's ``ThresholdOptimizer(prefit=True, predict_method="predict_proba")`` fitted on
    the training data around the ``none`` model. Binary labels only.

How the quantities are read off each final model:

- nets and ``gridsearch``: ``predict_proba`` for the loss, its argmax for the accuracy;
- ``eg`` is a randomized classifier (a mixture of nets with weights ``weights_``). Its accuracy is
  the *expected* accuracy of the mixture, from fairlearn's ``_pmf_predict`` (exact, no sampling).
  Its loss uses, by default (``eg_proba="soft"``), the mixture of the members' ``predict_proba``,
  ``Σ_t w_t p_t(y | x)``. ``eg_proba="pmf"`` uses ``_pmf_predict`` instead, which mixes the
  members' *hard* predictions: a sample that every member misclassifies then gets probability
  0, clipped to 1e-12, i.e. a loss of 27.6 nats, so the losses measure error counts rather than
  confidence and are not comparable with the other methods;
- ``threshold`` has no class probabilities (it thresholds scores per group), so its losses,
  ``R(a)``, ``ξ`` and flip rates are NaN; its accuracies (expected accuracy of its randomized
  thresholds, from ``_pmf_predict``), accuracy gaps and excess accuracy gaps ψ_g are real.

Every per-group table is an :class:`~fairprune_sk.ExcessRiskFrame` (built with
``ExcessRiskFrame.from_outputs``), so the columns are the frame's (:data:`GROUP_COLUMNS` =
``FRAME_COLUMNS``) and ξ is ``fairness_violation`` everywhere.

The fairness constraint is enforced on training data; how well it holds on test data is a
different matter, so every summary reports both ``fairness_violation`` (test) and
``train_fairness_violation``.

:func:`summarize` gives, per method × rate, the mean over seeds and a Student-t confidence
interval of the mean (95 % by default): with 3 seeds the half-width is 2.48 standard
deviations, so a difference between methods smaller than that is not shown by the sweep.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .metrics import FRAME_COLUMNS, ExcessRiskFrame, encode_labels
from .nets import PrunableNetClassifier

__all__ = [
    "METHODS",
    "DEFAULT_METHODS",
    "SUMMARY_COLUMNS",
    "GROUP_COLUMNS",
    "MethodResult",
    "fit_dense_reference",
    "run_method",
    "run_methods",
    "compare_methods",
    "summarize",
    "format_summary",
    "flat_summary",
    "seed_interval",
]

#: Every method :func:`run_method` knows.
METHODS: tuple[str, ...] = (
    "none",
    "fair_before",
    "fair_after",
    "fair_both",
    "ceag",
    "ceag_heldout",
    "eg",
    "gridsearch",
    "threshold",
)
#: Methods :func:`compare_methods` runs by default (GridSearch left out: it trains ``grid_size``
#: nets per run and selects one, a slower and cruder relative of ``eg``).
DEFAULT_METHODS: tuple[str, ...] = (
    "none",
    "fair_before",
    "fair_after",
    "fair_both",
    "ceag",
    "eg",
    "threshold",
)
FAIR_PHASES = {"fair_before": "before", "fair_after": "after", "fair_both": "both"}
#: FairConstrainedNet parameters each constrained method sets (over ``net_params``).
FAIR_METHODS: dict[str, dict[str, Any]] = {
    **{method: {"constraint_phase": phase} for method, phase in FAIR_PHASES.items()},
    "ceag": {"constraint_phase": "after", "constraint_target": "accuracy_gap"},
    "ceag_heldout": {"constraint_phase": "after", "constraint_target": "accuracy_gap",
                     "constraint_split": 0.2},
}
BINARY_ONLY = ("eg", "gridsearch", "threshold")
EG_CONSTRAINTS = ("error_rate_parity", "bounded_group_loss")
THRESHOLD_CONSTRAINTS = ("demographic_parity", "equalized_odds")
EG_PROBA = ("soft", "pmf")

#: Parameters only :class:`~fairprune_sk.constrained.FairConstrainedNet` takes; they are left
#: out of ``net_params`` for the other methods.
FAIR_ONLY_PARAMS = (
    "dual_lr",
    "dual_update",
    "kickin",
    "constraint_target",
    "tolerance",
    "dual_dynamics",
    "multiplier_cap",
    "dual_damping",
    "replay_size",
    "constraint_split",
    "best_iterate",
)
#: Parameters a run sets itself; ``net_params`` must not hold them.
RESERVED_PARAMS = ("pruning_rate", "random_state", "constraint_phase")

#: Columns of :attr:`MethodResult.by_group_test` / ``by_group_train``, in order: those of
#: :attr:`ExcessRiskFrame.by_group <fairprune_sk.ExcessRiskFrame.by_group>`.
GROUP_COLUMNS = FRAME_COLUMNS
#: Run-level quantities of one split, in order (prefixed ``train_`` for the training data).
RUN_METRICS = (
    "accuracy",
    "fairness_violation",
    "max_excess_accuracy_gap",
    "accuracy_gap",
    "worst_group_accuracy",
    "flip_rate",
)
#: Columns of :func:`compare_methods`, in order.
SUMMARY_COLUMNS = (
    "method",
    "rate",
    "seed",
    "accuracy",
    "accuracy_dense",
    "fairness_violation",
    "max_excess_accuracy_gap",
    "accuracy_gap",
    "worst_group_accuracy",
    "flip_rate",
    *(f"train_{name}" for name in RUN_METRICS),
    "sparsity",
    "seconds",
)
#: Confidence level of the intervals over seeds.
DEFAULT_CONFIDENCE = 0.95

NON_BINARY_LABELS = (
    "method {method!r} wraps a fairlearn binary-classification mitigator and needs exactly two "
    "classes; y_train has {n_classes}: {classes}. Use none / fair_* / ceag / ceag_heldout "
    "for multi-class data"
)


def default_net_params() -> dict[str, Any]:
    """The net used when ``net_params`` is None: an MLP (64, 64) on tabular data."""
    from .models import MLP

    return {
        "module": MLP,
        "module__hidden_units": (64, 64),
        "max_epochs": 10,
        "lr": 0.05,
        "batch_size": 256,
        "fine_tune_epochs": 2,
        "verbose": 0,
    }


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass
class MethodResult:
    """One method at one pruning rate and seed.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    rate : float
        Pruning rate.
    seed : int
        ``random_state`` of every net of the run (the dense reference included).
    seconds : float
        Wall time of the method, its training of the dense net included (for ``none`` and
        ``threshold``, which reuse θ*, the dense training time is θ*'s ``history`` ``dur`` sum).
    model : object or None
        The fitted final model (None when the run was asked not to keep it).
    by_group_test, by_group_train : pandas.DataFrame
        ``ExcessRiskFrame.by_group`` of the final model against the common dense reference θ*
        on the test / training data: one row per group, columns :data:`GROUP_COLUMNS`
        (``count``, ``loss_dense``, ``loss_pruned``, ``excess_risk`` R(a),
        ``accuracy_dense``, ``accuracy_pruned``, ``accuracy_drop``, ``excess_accuracy_gap``
        ψ_g, ``flip_rate``). "dense" is θ*, "pruned" the method's final model.
    summary : dict
        The row of :func:`compare_methods` (keys :data:`SUMMARY_COLUMNS`).
    own_dense_accuracy : pandas.Series or None
        Test accuracy per group of the dense net the method itself pruned, aligned with
        ``by_group_test``: θ* for ``none`` and ``threshold``; the method's own dense net for
        ``fair_*`` (its constrained training changes θ*; at rate 0 the final model itself)
        and for ``gridsearch``'s selected net; NaN for ``eg`` (a mixture of nets). Figures
        draw the change in group accuracy from it, so that methods that train their own
        dense net show pruning's effect rather than their retraining's.
    """

    method: str
    rate: float
    seed: int
    seconds: float
    model: Any
    by_group_test: pd.DataFrame
    by_group_train: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    own_dense_accuracy: pd.Series | None = None


@dataclass
class _Split:
    """One evaluation split, with labels encoded against the dense net's classes."""

    X: Any
    y: np.ndarray
    y_index: np.ndarray
    A: Any


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _check_choice(value: Any, name: str, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}; got {value!r}")
    return value


def _resolve_net_params(net_params: Mapping[str, Any] | None) -> dict[str, Any]:
    params = default_net_params() if net_params is None else dict(net_params)
    if "module" not in params:
        raise ValueError("net_params needs a 'module' (a torch.nn.Module class returning logits)")
    reserved = [name for name in RESERVED_PARAMS if name in params]
    if reserved:
        raise ValueError(
            f"net_params must not set {reserved}: each run sets pruning_rate (from rates), "
            "random_state (from seeds) and constraint_phase (from the method)"
        )
    return params


def _plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``net_params`` for a PrunableNetClassifier (FairConstrainedNet-only keys left out)."""
    return {key: value for key, value in params.items() if key not in FAIR_ONLY_PARAMS}


def _history_seconds(net: PrunableNetClassifier) -> float:
    return float(np.sum(net.history[:, "dur"])) if len(net.history) else 0.0


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (None: leave as is), restored afterwards."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
def fit_dense_reference(
    X_train: Any, y_train: Any, *, seed: int, net_params: Mapping[str, Any] | None = None
) -> PrunableNetClassifier:
    """The common dense reference θ*: a ``PrunableNetClassifier`` trained without pruning.

    Parameters
    ----------
    X_train : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        Training data.
    y_train : array-like of shape (n_samples,)
        Class labels.
    seed : int
        ``random_state`` of the net (the methods of the same seed use the same one).
    net_params : dict, optional
        ``PrunableNetClassifier`` parameters (``module`` included); FairConstrainedNet-only keys
        (``dual_lr``, ...) are ignored. None: :func:`default_net_params`.

    Returns
    -------
    PrunableNetClassifier
        Fitted, dense.
    """
    params = _plain_params(_resolve_net_params(net_params))
    return PrunableNetClassifier(**params, pruning_rate=0.0, random_state=seed).fit(
        X_train, y_train
    )


def prune_copy(
    net: PrunableNetClassifier,
    rate: float,
    X: Any,
    y: Any,
    *,
    method: str | None = None,
    fine_tune_epochs: int = 0,
) -> PrunableNetClassifier:
    """A pruned (and optionally fine-tuned) copy of a fitted dense net; ``net`` is untouched."""
    pruned = copy.deepcopy(net).prune(rate, method=method)
    if fine_tune_epochs > 0:
        max_epochs = pruned.max_epochs
        pruned.set_params(max_epochs=fine_tune_epochs)
        pruned.partial_fit(X, y)
        pruned.set_params(max_epochs=max_epochs)
    return pruned


def _prune_dense(dense: PrunableNetClassifier, rate: float, X: Any,
                 y: Any) -> PrunableNetClassifier:
    """θ* pruned at ``rate`` and fine-tuned ``fine_tune_epochs`` (θ* itself at rate 0)."""
    if rate == 0:
        return copy.deepcopy(dense)
    return prune_copy(dense, rate, X, y, fine_tune_epochs=int(dense.fine_tune_epochs))


def _columns_by_class(estimator: Any, X: Any, n_classes: int) -> np.ndarray:
    """``predict_proba`` of a member of a fairlearn mixture, one column per label 0..K-1.

    Members trained on relabelled data may have seen one class only (fairlearn then fits a
    ``DummyClassifier``), so columns are placed by ``classes_``.
    """
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    out = np.zeros((proba.shape[0], n_classes))
    for column, label in enumerate(np.asarray(estimator.classes_)):
        out[:, int(label)] = proba[:, column]
    return out


def _eg_soft_proba(eg: Any, X: Any, n_classes: int) -> np.ndarray:
    """``Σ_t w_t p_t(y | x)``: the EG mixture of its members' class probabilities."""
    proba = np.zeros((len(X), n_classes))
    for index, weight in eg.weights_.items():
        if weight > 0:
            proba += weight * _columns_by_class(eg.predictors_[index], X, n_classes)
    return proba


def _expected_correct(pmf: Any, y_index: np.ndarray) -> np.ndarray:
    """Probability that a randomized classifier with this pmf predicts the true label."""
    pmf = np.asarray(pmf, dtype=np.float64)
    return pmf[np.arange(len(y_index)), y_index]


def _eg_expected_correct(eg: Any, X: Any, y_index: np.ndarray) -> np.ndarray:
    """Expected accuracy per sample of EG's randomized mixture of hard predictions."""
    pmf = eg._pmf_predict(X)
    if isinstance(pmf, pd.DataFrame):  # loss moments: one column of predictions per member
        predictions = pmf[eg.weights_.index].to_numpy()
        hits = predictions == y_index[:, None]
        return hits @ eg.weights_.to_numpy(dtype=np.float64)
    return _expected_correct(pmf, y_index)


def _outputs(method: str, model: Any, split: _Split, *, n_classes: int,
             eg_proba: str) -> tuple[np.ndarray | None, np.ndarray]:
    """Class probabilities (None if the model has none) and per-sample (expected) correctness."""
    if method == "threshold":
        pmf = model._pmf_predict(split.X, sensitive_features=split.A)
        return None, _expected_correct(pmf, split.y_index)
    if method == "eg":
        correct = _eg_expected_correct(model, split.X, split.y_index)
        if eg_proba == "pmf":
            proba = model._pmf_predict(split.X)
            if isinstance(proba, pd.DataFrame):  # loss moments give no pmf over classes
                return None, correct
            return np.asarray(proba, dtype=np.float64), correct
        return _eg_soft_proba(model, split.X, n_classes), correct
    if method == "gridsearch":  # the selected member may be a one-class DummyClassifier
        proba = _columns_by_class(model.predictors_[model.best_idx_], split.X, n_classes)
    else:
        proba = np.asarray(model.predict_proba(split.X), dtype=np.float64)
    return proba, (proba.argmax(axis=1) == split.y_index).astype(np.float64)


def _frame(split: _Split, classes: np.ndarray, proba_dense: np.ndarray,
           proba_after: np.ndarray | None, correct_after: np.ndarray) -> ExcessRiskFrame:
    """The audit table of a final model against θ* on one split (the one implementation)."""
    return ExcessRiskFrame.from_outputs(
        split.y, proba_dense, proba_after, sensitive_features=split.A, classes=classes,
        correct_pruned=correct_after,
    )


def _run_metrics(frame: ExcessRiskFrame) -> dict[str, float]:
    """:data:`RUN_METRICS` of one frame (NaN where the model has no probabilities)."""
    overall = frame.overall
    return {
        "accuracy": float(overall["accuracy_pruned"]),
        "fairness_violation": frame.fairness_violation,
        "max_excess_accuracy_gap": frame.max_excess_accuracy_gap,
        "accuracy_gap": frame.accuracy_gap,
        "worst_group_accuracy": frame.worst_group_accuracy,
        "flip_rate": float(overall["flip_rate"]),
    }


def _own_dense_accuracy(method: str, model: Any, rate: float, split: _Split,
                        classes: np.ndarray, by_group: pd.DataFrame) -> pd.Series:
    """Per-group accuracy of the dense net the method pruned (see ``MethodResult``)."""
    if method in ("none", "threshold"):
        return by_group["accuracy_dense"].copy()
    net = model
    if method == "gridsearch":
        net = model.predictors_[model.best_idx_]
    nan = pd.Series(np.nan, index=by_group.index, name="accuracy_dense")
    if method == "eg" or not isinstance(net, PrunableNetClassifier):
        return nan
    if rate == 0 or getattr(net, "dense_state_dict_", None) is None:
        return by_group["accuracy_pruned"].rename("accuracy_dense")
    own = net.dense_reference()
    proba_own = _columns_by_class(own, split.X, len(classes))
    frame = ExcessRiskFrame.from_outputs(split.y, proba_own, proba_own,
                                         sensitive_features=split.A, classes=classes)
    return frame.by_group["accuracy_dense"]


def _model_sparsity(method: str, model: Any) -> float:
    if method == "eg":
        weights = model.weights_
        values = [(w, getattr(model.predictors_[i], "sparsity_", np.nan))
                  for i, w in weights.items() if w > 0]
        total = sum(w for w, s in values if not np.isnan(s))
        return float(sum(w * s for w, s in values if not np.isnan(s)) / total) if total else np.nan
    if method == "gridsearch":
        return float(getattr(model.predictors_[model.best_idx_], "sparsity_", np.nan))
    if method == "threshold":
        return float(model.estimator.sparsity_)
    return float(model.sparsity_)


def _eg_constraint(name: str, upper_bound: float | None, dense_error: float) -> Any:
    from fairlearn.reductions import BoundedGroupLoss, ErrorRateParity, ZeroOneLoss

    if name == "error_rate_parity":
        return ErrorRateParity()
    bound = dense_error if upper_bound is None else float(upper_bound)
    return BoundedGroupLoss(ZeroOneLoss(), upper_bound=bound)


# --------------------------------------------------------------------------------------------
# one method
# --------------------------------------------------------------------------------------------
def run_method(
    method: str,
    *,
    X_train: Any,
    y_train: Any,
    A_train: Any,
    X_test: Any,
    y_test: Any,
    A_test: Any,
    rate: float,
    seed: int,
    net_params: Mapping[str, Any] | None = None,
    eg_constraint: str = "error_rate_parity",
    eg_upper_bound: float | None = None,
    eg_proba: str = "soft",
    threshold_constraint: str = "demographic_parity",
    eg_params: Mapping[str, Any] | None = None,
    gridsearch_params: Mapping[str, Any] | None = None,
    dense: PrunableNetClassifier | None = None,
    keep_model: bool = True,
) -> MethodResult:
    """Train one method at one pruning rate and audit it against the common dense reference.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    X_train, X_test : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        Training and test data (2-D for ``eg`` / ``gridsearch`` / ``threshold``).
    y_train, y_test : array-like of shape (n_samples,)
        Class labels; two classes for ``eg``, ``gridsearch`` and ``threshold``.
    A_train, A_test : array-like, Series or DataFrame of shape (n_samples,) or (n_samples, k)
        Sensitive features (several columns: intersectional groups).
    rate : float in [0, 1)
        Pruning rate of the final model.
    seed : int
        ``random_state`` of every net trained (and of θ* when ``dense`` is None).
    net_params : dict, optional
        Parameters of the nets, ``module`` included (``max_epochs``, ``lr``, ``batch_size``,
        ``fine_tune_epochs``, ``pruning_method``, ``module__*``, ...), plus the
        FairConstrainedNet-only ``dual_lr``, ``dual_update``, ``kickin``,
        ``constraint_target`` (used by ``fair_*`` only). Must not hold ``pruning_rate``,
        ``random_state`` or ``constraint_phase``.
        None: :func:`default_net_params`.
    eg_constraint : {"error_rate_parity", "bounded_group_loss"}, default="error_rate_parity"
        The fairlearn moment of ``eg`` and ``gridsearch``: ``ErrorRateParity()`` or
        ``BoundedGroupLoss(ZeroOneLoss(), upper_bound=eg_upper_bound)``.
    eg_upper_bound : float, optional
        Bound of ``bounded_group_loss``; None: the training error of θ* (every group must do
        at least as well as the dense net does on average).
    eg_proba : {"soft", "pmf"}, default="soft"
        How ``eg``'s loss is computed (see the module documentation).
    threshold_constraint : {"demographic_parity", "equalized_odds"}, default="demographic_parity"
        Constraint of ``ThresholdOptimizer``.
    eg_params : dict, optional
        Extra arguments of ``ExponentiatedGradient`` (``max_iter``, ``eps``, ...).
    gridsearch_params : dict, optional
        Extra arguments of ``GridSearch`` (``grid_size``, ...).
    dense : PrunableNetClassifier, optional
        The fitted common dense reference θ* of this seed (from :func:`fit_dense_reference`);
        trained here if None. Pass it to share one θ* across methods and rates.
    keep_model : bool, default=True
        Keep the fitted final model in the result (False saves memory and pickling).

    Returns
    -------
    MethodResult

    Raises
    ------
    ValueError
        For an unknown method or option, reserved keys in ``net_params``, or non-binary labels
        with ``eg`` / ``gridsearch`` / ``threshold``.
    """
    method = _check_choice(method, "method", METHODS)
    _check_choice(eg_constraint, "eg_constraint", EG_CONSTRAINTS)
    _check_choice(eg_proba, "eg_proba", EG_PROBA)
    _check_choice(threshold_constraint, "threshold_constraint", THRESHOLD_CONSTRAINTS)
    from .pruning import validate_rate

    rate = validate_rate(rate, "rate")
    params = _resolve_net_params(net_params)
    mitigator_params = dict((eg_params if method == "eg" else gridsearch_params) or {})

    y_train = np.asarray(y_train).ravel()
    y_test = np.asarray(y_test).ravel()
    classes = np.unique(y_train)
    if method in BINARY_ONLY and len(classes) != 2:
        shown = classes.tolist()[:10]
        raise ValueError(NON_BINARY_LABELS.format(method=method, n_classes=len(classes),
                                                  classes=shown))
    if dense is None:
        dense = fit_dense_reference(X_train, y_train, seed=seed, net_params=params)
    elif not np.array_equal(np.asarray(dense.classes_), classes):
        raise ValueError(
            f"dense.classes_ {np.asarray(dense.classes_).tolist()} differ from the classes of "
            f"y_train {classes.tolist()}; pass the dense reference trained on these data"
        )
    train = _Split(X_train, y_train, encode_labels(y_train, dense.classes_), A_train)
    test = _Split(X_test, y_test, encode_labels(y_test, dense.classes_), A_test)

    start = time.perf_counter()
    model, reused_dense = _train(
        method, params, train, rate=rate, seed=seed, dense=dense, y_train=y_train,
        eg_constraint=eg_constraint, eg_upper_bound=eg_upper_bound,
        threshold_constraint=threshold_constraint, mitigator_params=mitigator_params,
    )
    seconds = time.perf_counter() - start + (_history_seconds(dense) if reused_dense else 0.0)

    frames = {}
    for name, split in (("test", test), ("train", train)):
        proba_after, correct_after = _outputs(method, model, split, n_classes=len(classes),
                                              eg_proba=eg_proba)
        frames[name] = _frame(split, dense.classes_, dense.predict_proba(split.X), proba_after,
                              correct_after)
    test_metrics = _run_metrics(frames["test"])
    summary = {
        "method": method,
        "rate": rate,
        "seed": seed,
        **test_metrics,
        "accuracy_dense": float(frames["test"].overall["accuracy_dense"]),
        **{f"train_{key}": value for key, value in _run_metrics(frames["train"]).items()},
        "sparsity": _model_sparsity(method, model),
        "seconds": seconds,
    }
    summary = {key: summary[key] for key in SUMMARY_COLUMNS}
    by_group_test = frames["test"].by_group
    return MethodResult(
        method=method, rate=rate, seed=seed, seconds=seconds,
        model=model if keep_model else None,
        by_group_test=by_group_test, by_group_train=frames["train"].by_group, summary=summary,
        own_dense_accuracy=_own_dense_accuracy(method, model, rate, test, dense.classes_,
                                               by_group_test),
    )


def _train(method: str, params: dict[str, Any], train: _Split, *, rate: float, seed: int,
           dense: PrunableNetClassifier, y_train: np.ndarray, eg_constraint: str,
           eg_upper_bound: float | None, threshold_constraint: str,
           mitigator_params: dict[str, Any]) -> tuple[Any, bool]:
    """Fit the method's final model; also say whether it reused θ* (for the wall time)."""
    plain = _plain_params(params)
    if method == "none":
        return _prune_dense(dense, rate, train.X, y_train), True
    if method in FAIR_METHODS:
        from .constrained import FairConstrainedNet

        fair = FairConstrainedNet(**{**params, **FAIR_METHODS[method]}, pruning_rate=rate,
                                  random_state=seed)
        return fair.fit(train.X, y_train, sensitive_features=train.A), False
    if method == "threshold":
        from fairlearn.postprocessing import ThresholdOptimizer

        pruned = _prune_dense(dense, rate, train.X, y_train)
        optimizer = ThresholdOptimizer(estimator=pruned, prefit=True,
                                       predict_method="predict_proba",
                                       constraints=threshold_constraint)
        return optimizer.fit(train.X, train.y_index, sensitive_features=train.A), True
    # fairlearn reductions: every oracle call trains, prunes and fine-tunes a net.
    estimator = PrunableNetClassifier(**plain, pruning_rate=rate, random_state=seed)
    dense_error = 1.0 - float(np.mean(dense.predict_proba(train.X).argmax(axis=1)
                                      == train.y_index))
    constraint = _eg_constraint(eg_constraint, eg_upper_bound, dense_error)
    if method == "eg":
        from fairlearn.reductions import ExponentiatedGradient

        mitigator = ExponentiatedGradient(estimator, constraints=constraint, **mitigator_params)
    else:
        from fairlearn.reductions import GridSearch

        mitigator = GridSearch(estimator, constraints=constraint, **mitigator_params)
    return mitigator.fit(train.X, train.y_index, sensitive_features=train.A), False


# --------------------------------------------------------------------------------------------
# many methods × rates × seeds
# --------------------------------------------------------------------------------------------
def _dense_job(X_train: Any, y_train: Any, seed: int, params: dict[str, Any],
               threads: int | None) -> PrunableNetClassifier:
    with _torch_threads(threads):
        return fit_dense_reference(X_train, y_train, seed=seed, net_params=params)


def _method_job(method: str, rate: float, seed: int, dense: PrunableNetClassifier,
                data: dict[str, Any], options: dict[str, Any], threads: int | None) -> MethodResult:
    with _torch_threads(threads):
        return run_method(method, rate=rate, seed=seed, dense=dense, **data, **options)


def _parallel_results(jobs: list, n_jobs: int | None) -> Iterator[Any]:
    """Results of joblib jobs as they finish, through the active joblib backend.

    Backends that cannot return a generator (Ray's ``ray.util.joblib`` backend) give all the
    results together once the last job is done.
    """
    from joblib import Parallel

    try:
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    except ValueError as error:  # joblib checks the backend's supports_return_generator
        if "return_as" not in str(error):
            raise
        parallel = Parallel(n_jobs=n_jobs)
    yield from parallel(jobs)


def run_methods(
    X_train: Any,
    y_train: Any,
    A_train: Any,
    X_test: Any,
    y_test: Any,
    A_test: Any,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    rates: Sequence[float] = (0.5, 0.8, 0.9),
    seeds: Sequence[int] = (0, 1, 2),
    net_params: Mapping[str, Any] | None = None,
    n_jobs: int | None = 1,
    threads: int | None = None,
    keep_models: bool = False,
    progress: Callable[[MethodResult, int, int], None] | None = None,
    **options: Any,
) -> list[MethodResult]:
    """Run every method × rate × seed, sharing one dense reference per seed.

    The dense references are trained first (one job per seed), then every method × rate ×
    seed is an independent job; both stages go through ``joblib.Parallel``, so
    ``joblib.parallel_config(backend="dask")`` sends them to a Dask cluster, and
    ``parallel_config(backend="ray")`` (after ``ray.util.joblib.register_ray()``) to Ray.

    Parameters
    ----------
    X_train, y_train, A_train, X_test, y_test, A_test
        As for :func:`run_method`.
    methods : sequence of str, default=DEFAULT_METHODS
        Among :data:`METHODS`.
    rates : sequence of float, default=(0.5, 0.8, 0.9)
        Pruning rates in [0, 1).
    seeds : sequence of int, default=(0, 1, 2)
        One dense reference and one run of every method per seed.
    net_params : dict, optional
        As for :func:`run_method`.
    n_jobs : int or None, default=1
        Parallel jobs of ``joblib.Parallel`` (-1: all cores; None: joblib's active default,
        e.g. from ``joblib.parallel_config``). With the default backend, 1 runs in this
        process. Under ``parallel_config(backend="dask")`` the jobs run on the cluster's
        workers whatever ``n_jobs`` is; pass ``n_jobs=-1`` so that each job uses one torch
        thread (see ``threads``). Under Ray's backend ``n_jobs=-1`` uses all the CPUs Ray
        knows of.
    threads : int, optional
        torch CPU threads inside each job; None: 1 when ``n_jobs != 1`` (so jobs do not fight
        over cores), torch's current setting otherwise.
    keep_models : bool, default=False
        Keep each run's fitted final model in its result.
    progress : callable, optional
        Called as ``progress(result, n_done, n_total)`` in this process as each run finishes.
    **options
        ``eg_constraint``, ``eg_upper_bound``, ``eg_proba``, ``threshold_constraint``,
        ``eg_params``, ``gridsearch_params``: as for :func:`run_method`.

    Returns
    -------
    list of MethodResult
        Ordered by method (as given), rate, seed, whatever order the jobs finished in.
    """
    methods = [_check_choice(m, "methods", METHODS) for m in methods]
    if not methods or not len(rates) or not len(seeds):
        raise ValueError("methods, rates and seeds must each hold at least one value")
    unknown = set(options) - {"eg_constraint", "eg_upper_bound", "eg_proba",
                              "threshold_constraint", "eg_params", "gridsearch_params"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    from .pruning import validate_rate

    rates = [validate_rate(r, "rates") for r in rates]
    seeds = [int(s) for s in seeds]
    params = _resolve_net_params(net_params)
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int)
                               or n_jobs == 0):
        raise ValueError(f"n_jobs must be a non-zero int (-1: all cores) or None; got {n_jobs!r}")
    if threads is None and n_jobs != 1:
        threads = 1
    classes = np.unique(np.asarray(y_train).ravel())
    for method in methods:
        if method in BINARY_ONLY and len(classes) != 2:
            raise ValueError(NON_BINARY_LABELS.format(method=method, n_classes=len(classes),
                                                      classes=classes.tolist()[:10]))

    from joblib import delayed

    dense_jobs = [delayed(_dense_job)(X_train, y_train, seed, params, threads) for seed in seeds]
    dense = dict(zip(seeds, _ordered(dense_jobs, n_jobs), strict=True))

    data = dict(X_train=X_train, y_train=y_train, A_train=A_train, X_test=X_test,
                y_test=y_test, A_test=A_test)
    run_options = {**options, "net_params": params, "keep_model": keep_models}
    jobs = [
        delayed(_method_job)(method, rate, seed, dense[seed], data, run_options, threads)
        for method in methods for rate in rates for seed in seeds
    ]
    results = []
    for result in _parallel_results(jobs, n_jobs):
        results.append(result)
        if progress is not None:
            progress(result, len(results), len(jobs))
    order = {m: k for k, m in enumerate(methods)}
    return sorted(results, key=lambda r: (order[r.method], r.rate, r.seed))


def _ordered(jobs: list, n_jobs: int | None) -> list:
    from joblib import Parallel

    return Parallel(n_jobs=n_jobs)(jobs)


def compare_methods(
    X_train: Any,
    y_train: Any,
    A_train: Any,
    X_test: Any,
    y_test: Any,
    A_test: Any,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    rates: Sequence[float] = (0.5, 0.8, 0.9),
    seeds: Sequence[int] = (0, 1, 2),
    net_params: Mapping[str, Any] | None = None,
    n_jobs: int | None = 1,
    **options: Any,
) -> pd.DataFrame:
    """Tidy comparison table: one row per method × rate × seed.

    Parameters
    ----------
    X_train, y_train, A_train, X_test, y_test, A_test
        Training and test data and their sensitive features, as for :func:`run_method`.
    methods, rates, seeds, net_params, n_jobs
        As for :func:`run_methods`.
    **options
        ``threads``, ``progress``, ``keep_models``, ``eg_constraint``, ``eg_upper_bound``,
        ``eg_proba``, ``threshold_constraint``, ``eg_params``, ``gridsearch_params``: as for
        :func:`run_methods`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`: ``method``, ``rate``, ``seed``; on the test data
        ``accuracy`` (and ``accuracy_dense`` of θ*), ``fairness_violation`` (ξ, eq. 3),
        ``max_excess_accuracy_gap`` (max_g ψ_g), ``accuracy_gap``, ``worst_group_accuracy``,
        ``flip_rate`` (overall fraction of predictions changed from θ*); the same six on the
        training data prefixed ``train_`` (how well a constraint holds where it was
        enforced); ``sparsity`` and ``seconds``. ``fairness_violation`` and ``flip_rate`` are
        NaN for ``threshold`` (no probabilities); ψ is defined for every method.

    Examples
    --------
    >>> table = compare_methods(X_tr, y_tr, A_tr, X_te, y_te, A_te,
    ...                         methods=("none", "fair_after"), seeds=(0,))  # doctest: +SKIP
    >>> summarize(table)                                                   # doctest: +SKIP
    """
    results = run_methods(X_train, y_train, A_train, X_test, y_test, A_test, methods=methods,
                          rates=rates, seeds=seeds, net_params=net_params, n_jobs=n_jobs,
                          **options)
    return pd.DataFrame([r.summary for r in results], columns=list(SUMMARY_COLUMNS))


def seed_interval(mean: Any, std: Any, n: Any,
                  confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Student-t confidence interval of a mean over ``n`` seeds.

    ``mean ± t_{(1 + confidence) / 2, n - 1} · std / sqrt(n)``, with ``std`` the sample standard
    deviation (``ddof=1``). NaN where ``n < 2``: one seed says nothing about the seed noise.

    Parameters
    ----------
    mean, std, n : array-like of the same shape
        Mean, sample standard deviation and number of (non-NaN) seeds.
    confidence : float in (0, 1), default=0.95
        Coverage of the interval.

    Returns
    -------
    low, high : ndarray
    """
    from scipy import stats

    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = np.where(n >= 2, n - 1, np.nan)
        half = stats.t.ppf(0.5 + float(confidence) / 2, dof) * std / np.sqrt(n)
    return mean - half, mean + half


def summarize(table: pd.DataFrame, confidence: float = DEFAULT_CONFIDENCE) -> pd.DataFrame:
    """Mean over seeds and a Student-t confidence interval of it, per method × rate.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`compare_methods` (or any table with ``method``, ``rate``, ``seed`` and
        numeric columns).
    confidence : float in (0, 1), default=0.95
        Coverage of the intervals (:func:`seed_interval`).

    Returns
    -------
    pandas.DataFrame
        Indexed by (``method``, ``rate``) in the order of first appearance; columns a
        ``MultiIndex`` (metric, ``mean`` / ``std`` / ``ci_low`` / ``ci_high``) plus
        ``("n_seeds", "")``. NaN values (ξ of ``threshold``) are left out of the mean and the
        interval; with a single seed the interval (and the std) is NaN.
    """
    missing = [c for c in ("method", "rate", "seed") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the column(s) {missing}; pass compare_methods' output")
    metrics = [c for c in table.columns
               if c not in ("method", "rate", "seed") and pd.api.types.is_numeric_dtype(table[c])]
    grouped = table.groupby(["method", "rate"], sort=False)
    stats = grouped[metrics].agg(["mean", "std", "count"])
    parts = {}
    for metric in metrics:
        mean, std, n = (stats[(metric, k)] for k in ("mean", "std", "count"))
        low, high = seed_interval(mean, std, n, confidence)
        parts[(metric, "mean")] = mean
        parts[(metric, "std")] = std
        parts[(metric, "ci_low")] = pd.Series(low, index=stats.index)
        parts[(metric, "ci_high")] = pd.Series(high, index=stats.index)
    summary = pd.DataFrame(parts, index=stats.index)
    summary.columns = pd.MultiIndex.from_tuples(summary.columns)
    summary[("n_seeds", "")] = grouped["seed"].nunique()
    return summary


def flat_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarize`'s output with flat columns ``<metric>_mean``, ``<metric>_ci_low``, ...

    (the schema of the benchmark's ``summary.csv``), ``method`` and ``rate`` as columns.
    """
    flat = summary.copy()
    flat.columns = [f"{a}_{b}" if b else a for a, b in flat.columns]
    return flat.reset_index()


def format_summary(summary: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``mean [ci_low, ci_high]`` strings of :func:`summarize`'s output, for printing or Markdown.

    With a single seed (no interval) only the mean is shown.
    """
    columns = [c for c in (columns or summary.columns.get_level_values(0).unique())
               if c != "n_seeds"]
    out = pd.DataFrame(index=summary.index)
    for column in columns:
        mean = summary[(column, "mean")]
        low, high = summary[(column, "ci_low")], summary[(column, "ci_high")]
        out[column] = [
            "nan" if np.isnan(m) else
            (f"{m:.4f}" if np.isnan(lo) else f"{m:.4f} [{lo:.4f}, {hi:.4f}]")
            for m, lo, hi in zip(mean, low, high, strict=True)
        ]
    out["n_seeds"] = summary[("n_seeds", "")]
    return out
