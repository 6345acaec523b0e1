"""Mitigation methods side by side: same split, same net, same pruning rate, same dense θ*.

Every method ends in one final model; all of them are audited against one **common dense
reference** θ*, the dense :class:`~fairprune_sk.PrunableNetClassifier` trained with the same seed
and parameters, so the excess risk ``R(a) = J(θ̂; D_a) − J(θ*; D_a)`` (eq. 2) and the fairness
violation ``ξ = max_a R(a) − min_a R(a)`` (eq. 3) of different methods are comparable.

Methods (:data:`METHODS`):

``none``
    θ* pruned at the rate (``pruning_method``), then fine-tuned ``fine_tune_epochs`` epochs with
    the masks held. At rate 0 it is θ* itself (the same fitted object, not a copy).
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

At rate 0 the methods whose constraint acts only after pruning (:data:`DENSE_AT_RATE_0`:
``fair_after``, ``ceag``, ``ceag_heldout``) are θ* itself, exactly as ``none`` is: nothing was
pruned, so there is nothing to constrain or fine-tune. (A ``FairConstrainedNet`` fitted with
``pruning_rate=0`` would constrain its dense training instead, a different net.) The methods
that change θ* (``fair_before``, ``fair_both``, ``eg``, ``gridsearch``, ``threshold``) run as
at any other rate.
``eg``
    fairlearn's ``ExponentiatedGradient`` around a ``PrunableNetClassifier(pruning_rate=rate)``:
    every oracle call trains, prunes and fine-tunes a net. Binary labels only.
``gridsearch``
    fairlearn's ``reductions.GridSearch`` around the same estimator. Binary labels only.
``threshold``
    fairlearn's ``ThresholdOptimizer(prefit=True, predict_method="predict_proba")`` fitted on
    the training data around the ``none`` model. Binary labels only.

With ``compress="quantize"`` the rate is a weight width in bits: ``none`` is θ* quantized
(:meth:`~fairprune_sk.PrunableNetClassifier.quantized_copy`) and fine-tuned
quantization-aware ``fine_tune_epochs`` epochs; the methods whose constraint acts only after
compression (:data:`QUANTIZABLE_METHODS`: ``ceag``, ``ceag_heldout``, ``gap_and_loss``, ...)
fine-tune θ*'s quantized copy under their constraint, as a ``FairConstrainedNet`` wrapping θ*'s
module; ``threshold`` post-processes the ``none`` model. The methods that change θ*
(``fair_before``, ``fair_both``, ``eg``, ``gridsearch``) have no quantized variant.

The final model's outputs are read off in :mod:`~fairprune_sk.benchmark.outputs`; many methods ×
rates × seeds run through joblib in :mod:`~fairprune_sk.benchmark.runner`; the summaries over
seeds are in :mod:`~fairprune_sk.benchmark.summary`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_choice
from ..metrics import FRAME_COLUMNS, encode_labels
from ..nets import PrunableNetClassifier
from .outputs import (
    _audit_frame,
    _model_sparsity,
    _outputs,
    _own_dense_accuracy,
    _run_metrics,
    _Split,
)

__all__ = [
    "METHODS",
    "COMPRESSIONS",
    "DEFAULT_METHODS",
    "DENSE_AT_RATE_0",
    "QUANTIZABLE_METHODS",
    "SUMMARY_COLUMNS",
    "GROUP_COLUMNS",
    "MethodResult",
    "check_compression",
    "check_methods",
    "fit_dense_reference",
    "run_method",
]

#: Every method :func:`run_method` knows.
METHODS: tuple[str, ...] = (
    "none",
    "fair_before",
    "fair_after",
    "fair_both",
    "ceag",
    "ceag_heldout",
    "gap_and_loss",
    "fair_gradient_norm",
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
    "gap_and_loss",
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
    "gap_and_loss": {"constraint_phase": "after", "constraint_target": "gap_and_loss"},
    "fair_gradient_norm": {"constraint_phase": "after", "constraint_target": "gradient_norm"},
}
#: Methods whose final model at rate 0 is θ* itself: ``none`` and the constrained methods whose
#: constraint acts only after pruning (``constraint_phase="after"``).
DENSE_AT_RATE_0: tuple[str, ...] = (
    "none",
    *(method for method, fair in FAIR_METHODS.items() if fair["constraint_phase"] == "after"),
)
#: What a run does to θ*: prune it at a rate, or quantize it to a width in bits.
COMPRESSIONS = ("prune", "quantize")
#: Methods that run with ``compress="quantize"``: those that compress θ* itself.
QUANTIZABLE_METHODS: tuple[str, ...] = ("threshold", *DENSE_AT_RATE_0)
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
    "noise_margin",
    "average_tail",
    "loss_dual_lr",
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

NON_BINARY_LABELS = (
    "method {method!r} wraps a fairlearn binary-classification mitigator and needs exactly two "
    "classes; y_train has {n_classes}: {classes}. Use none / fair_* / ceag / ceag_heldout "
    "for multi-class data"
)


def check_methods(methods: Sequence[str], y_train: Any,
                  pruning_method: str | None = None) -> list[str]:
    """The methods, checked to be known and to run on labels like ``y_train`` (and with
    ``pruning_method``).

    Parameters
    ----------
    methods : sequence of str
        Among :data:`METHODS`.
    y_train : array-like of shape (n_samples,)
        Training labels (``eg``, ``gridsearch`` and ``threshold`` need two classes).
    pruning_method : str, optional
        The nets' pruning method: a data-driven one
        (:data:`~fairprune_sk.pruning.DATA_DRIVEN_METHODS`) ranks the weights by the training
        groups, which fairlearn's reductions (``eg``, ``gridsearch``) do not pass to the net.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        An unknown method, or one that cannot run on these labels or with this pruning
        method (the message names it).

    Examples
    --------
    >>> check_methods(["none", "threshold"], [0, 1, 1])
    ['none', 'threshold']
    """
    methods = [check_choice(m, "methods", METHODS) for m in methods]
    classes = np.unique(np.asarray(y_train).ravel())
    for method in methods:
        if method in BINARY_ONLY and len(classes) != 2:
            raise ValueError(NON_BINARY_LABELS.format(method=method, n_classes=len(classes),
                                                      classes=classes.tolist()[:10]))
        _check_pruning_method(method, pruning_method)
    return methods


def check_compression(compress: str, methods: Sequence[str],
                      rates: Sequence[Any]) -> list[float] | list[int]:
    """The rates checked for ``compress``: pruning rates in [0, 1), or widths in bits.

    Parameters
    ----------
    compress : {"prune", "quantize"}
    methods : sequence of str
        With ``"quantize"``, all among :data:`QUANTIZABLE_METHODS`.
    rates : sequence
        Pruning rates, or bit widths (ints in [2, 8]) with ``"quantize"``.

    Returns
    -------
    list of float or list of int

    Raises
    ------
    ValueError
        Naming the bad value, or a method without a quantized variant.

    Examples
    --------
    >>> check_compression("quantize", ["none", "ceag"], [8, 3])
    [8, 3]
    """
    from .._validation import check_args
    from ..pruning import validate_rate
    from ..quantization._grid import BITS

    check_choice(compress, "compress", COMPRESSIONS)
    if compress == "prune":
        return [validate_rate(rate, "rates") for rate in rates]
    other = [method for method in methods if method not in QUANTIZABLE_METHODS]
    if other:
        raise ValueError(
            f"method {other[0]!r} changes the dense net while it trains and has no quantized "
            f"variant; with compress='quantize' use {', '.join(QUANTIZABLE_METHODS)}"
        )
    for bits in rates:
        check_args({"rates": BITS}, {"rates": bits}, "compress='quantize'")
    return [int(bits) for bits in rates]


def default_net_params() -> dict[str, Any]:
    """The net used when ``net_params`` is None: an MLP (64, 64) on tabular data."""
    from ..models import MLP

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
        Wall time of the method, its training of the dense net included (for the methods that
        reuse θ*, ``none``, ``threshold`` and the :data:`DENSE_AT_RATE_0` methods at rate 0,
        the dense training time is θ*'s ``history`` ``dur`` sum).
    model : object or None
        The fitted final model (None when the run was asked not to keep it). At rate 0 for the
        :data:`DENSE_AT_RATE_0` methods it is θ* itself, the object shared by every run of the
        seed (copy it before changing it).
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
        ``by_group_test``: θ* for ``none`` and ``threshold`` (and for the
        :data:`DENSE_AT_RATE_0` methods at rate 0); the method's own dense net for
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



# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
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


def _prune_dense(dense: PrunableNetClassifier, rate: float, X: Any,
                 y: Any, A: Any = None) -> PrunableNetClassifier:
    """θ* pruned at ``rate`` and fine-tuned ``fine_tune_epochs``; at rate 0 θ* itself.

    Nothing is modified at rate 0, so θ* is shared rather than copied; above it,
    :meth:`~fairprune_sk.PrunableNetClassifier.pruned_copy` copies the module only.
    """
    if rate == 0:
        return dense
    return dense.pruned_copy(rate, X=X, y=y, fine_tune_epochs=int(dense.fine_tune_epochs),
                             sensitive_features=A)  # the groups of a data-driven method


def _quantize_dense(dense: PrunableNetClassifier, bits: int, X: Any,
                    y: Any) -> PrunableNetClassifier:
    """θ* quantized to ``bits`` and fine-tuned quantization-aware ``fine_tune_epochs``."""
    quantized = dense.quantized_copy(int(bits))
    if dense.fine_tune_epochs:
        quantized.fine_tune(X, y, int(dense.fine_tune_epochs))
    return quantized


def _quantize_constrained(method: str, params: dict[str, Any], dense: PrunableNetClassifier,
                          bits: int, train: _Split, y_train: np.ndarray, seed: int) -> Any:
    """θ*'s module quantized to ``bits``, fine-tuned by a ``FairConstrainedNet`` under the
    method's constraint (θ* the common dense reference)."""
    from ..constrained import FairConstrainedNet
    from ..pruning import unpruned_copy

    own = {key: value for key, value in params.items() if not key.startswith("module__")}
    own.update(FAIR_METHODS[method], module=unpruned_copy(dense.module_),
               classes=dense.classes_, random_state=seed)
    fair = FairConstrainedNet(**own).initialize().quantize(int(bits))
    return fair.fine_tune(train.X, y_train, int(fair.fine_tune_epochs),
                          sensitive_features=train.A)


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
    compress: str = "prune",
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
        Pruning rate of the final model; with ``compress="quantize"`` its weight width in
        bits (an int in [2, 8]).
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
    compress : {"prune", "quantize"}, default="prune"
        Prune θ* at ``rate``, or quantize it to ``rate`` bits (:data:`QUANTIZABLE_METHODS`).

    Returns
    -------
    MethodResult

    Raises
    ------
    ValueError
        For an unknown method or option, reserved keys in ``net_params``, non-binary labels
        with ``eg`` / ``gridsearch`` / ``threshold``, or a method without a quantized variant.
    """
    method = check_choice(method, "method", METHODS)
    rate = check_compression(compress, [method], [rate])[0]
    check_choice(eg_constraint, "eg_constraint", EG_CONSTRAINTS)
    check_choice(eg_proba, "eg_proba", EG_PROBA)
    check_choice(threshold_constraint, "threshold_constraint", THRESHOLD_CONSTRAINTS)
    params = _resolve_net_params(net_params)
    mitigator_params = dict((eg_params if method == "eg" else gridsearch_params) or {})

    y_train = np.asarray(y_train).ravel()
    y_test = np.asarray(y_test).ravel()
    classes = np.unique(y_train)
    check_methods([method], y_train, params.get("pruning_method"))
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
        compress=compress,
    )
    seconds = time.perf_counter() - start + (_history_seconds(dense) if reused_dense else 0.0)

    frames = {}
    for name, split in (("test", test), ("train", train)):
        proba_after, correct_after = _outputs(method, model, split, n_classes=len(classes),
                                              eg_proba=eg_proba)
        frames[name] = _audit_frame(split, dense.classes_, dense.predict_proba(split.X),
                                    proba_after, correct_after)
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


def _check_pruning_method(method: str, pruning_method: str | None) -> None:
    """Refuse a data-driven ``pruning_method`` for fairlearn's reductions, whose ``fit`` calls
    pass the estimator no groups (the criterion would see one pooled group)."""
    from ..pruning import DATA_DRIVEN_METHODS

    if method in ("eg", "gridsearch") and pruning_method in DATA_DRIVEN_METHODS:
        raise ValueError(
            f"method={method!r} cannot prune with pruning_method={pruning_method!r}: fairlearn's "
            "reductions fit the net without the groups that criterion ranks the weights by; "
            "use a pruning_method that takes no data (global_magnitude, ...) with eg and "
            "gridsearch"
        )


def _train(method: str, params: dict[str, Any], train: _Split, *, rate: float, seed: int,
           dense: PrunableNetClassifier, y_train: np.ndarray, eg_constraint: str,
           eg_upper_bound: float | None, threshold_constraint: str,
           mitigator_params: dict[str, Any], compress: str = "prune") -> tuple[Any, bool]:
    """Fit the method's final model; also say whether it reused θ* (for the wall time)."""
    plain = _plain_params(params)
    quantize = compress == "quantize"
    compressed = _quantize_dense if quantize else _prune_dense
    if method in DENSE_AT_RATE_0 and rate == 0 and not quantize:  # nothing to constrain
        return dense, True
    groups = {} if quantize else {"A": train.A}
    if method == "none":
        return compressed(dense, rate, train.X, y_train, **groups), True
    if method in FAIR_METHODS and quantize:
        return _quantize_constrained(method, params, dense, rate, train, y_train, seed), True
    if method in FAIR_METHODS:
        from ..constrained import FairConstrainedNet

        fair = FairConstrainedNet(**{**params, **FAIR_METHODS[method]}, pruning_rate=rate,
                                  random_state=seed)
        return fair.fit(train.X, y_train, sensitive_features=train.A), False
    if method == "threshold":
        from fairlearn.postprocessing import ThresholdOptimizer

        pruned = compressed(dense, rate, train.X, y_train, **groups)
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

