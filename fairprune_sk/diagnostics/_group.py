"""GroupDiagnostics: the factors of Theorem 1 per group of a fitted net, beside its audit table."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from .. import pruning
from .._validation import Interval, StrOptions, check_args, torch_seed, validate_params
from ..metrics import ExcessRiskFrame, GroupCodes, encode_labels, group_codes, group_mean
from ..metrics._bootstrap import check_bootstrap_params
from ._checks import _as_class_indices, _as_input_array
from ._eigen import _dot, _warn_if_not_converged
from ._evaluator import _Evaluator
from ._factors import SOLVER_CONSTRAINTS, boundary_closeness
from ._functional import _KeptState
from ._hessian import _HessianOperator
from ._plot import _label, plot_group_factors

#: Factors whose rank correlation with the excess risk :meth:`GroupDiagnostics.correlations`
#: reports (those present in ``by_group``).
CORRELATION_FACTORS = (
    "gradient_norm",
    "hessian_max_eig",
    "boundary_closeness",
    "input_grad_norm",
    "bound",
    "taylor_estimate",
    "count",
)

#: Constraints of the constructor's plain arguments (n_boot and ci_quantiles are the frame's).
_CONSTRAINTS: dict[str, list[Any]] = {
    "max_iter": SOLVER_CONSTRAINTS["max_iter"],
    "tol": SOLVER_CONSTRAINTS["tol"],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "random_state": SOLVER_CONSTRAINTS["random_state"],
    "eig_method": SOLVER_CONSTRAINTS["method"],
}

#: Audit columns of ``GroupDiagnostics.by_group`` without a dense reference (the net is its
#: own θ*, so nothing is pruned and no excess risk exists).
_OWN_REFERENCE_COLUMNS = ("count", "loss_dense", "accuracy_dense")


def _module_of(net: Any, name: str) -> nn.Module:
    if isinstance(net, nn.Module):
        return net
    module = getattr(net, "module_", None)
    if not isinstance(module, nn.Module):
        raise NotFittedError(
            f"{name} must be a fitted skorch net (with module_) or a torch.nn.Module; "
            f"{type(net).__name__} has no fitted module_ (call fit first)"
        )
    return module


def _state_of(reference: Any) -> Mapping[str, Any]:
    """Dense parameters θ* from a fitted net, a module or a state_dict."""
    if isinstance(reference, Mapping):
        return reference
    return pruning.effective_state_dict(_module_of(reference, "reference"))


@dataclass
class _Data:
    """The evaluation data, coerced once."""

    X: np.ndarray  # numeric, (n_samples, ...)
    y: np.ndarray  # the labels as given, 1-D
    y_index: np.ndarray  # class indices 0 .. n_classes - 1
    classes: np.ndarray | None  # net.classes_, None for a bare module
    groups: GroupCodes


@dataclass
class _Measured:
    """What the evaluators measured: both nets' logits and the factors at θ*, per group."""

    logits_net: torch.Tensor
    logits_star: torch.Tensor
    grad_norms: list[float]
    eigs: list[float]
    taylor: list[float]  # empty without a dense reference
    n_iter: list[int]
    converged: list[bool]
    out_grad: np.ndarray
    distance: float | None  # ‖θ̂ − θ*‖, None without a dense reference

    @cached_property
    def proba_net(self) -> np.ndarray:
        return torch.softmax(self.logits_net.double(), dim=1).numpy()

    @cached_property
    def proba_star(self) -> np.ndarray:
        return torch.softmax(self.logits_star.double(), dim=1).numpy()



class GroupDiagnostics:
    """Per-group factors of pruning's disparate impact (Theorems 1–2, Proposition 1).

    Everything is computed once, in the constructor (like fairlearn's ``MetricFrame``);
    ``by_group``, ``correlations`` and ``plot`` only read the results.

    The per-group counts, losses, accuracies and the excess risk ``R(a)`` are those of
    :class:`~fairprune_sk.ExcessRiskFrame` (the package's one audit table, built from the two
    nets' outputs with :meth:`~fairprune_sk.ExcessRiskFrame.from_outputs`), in its column
    names; the factors of Theorem 1 are added beside them.

    Gradients, Hessian eigenvalues, boundary closeness and output gradients are measured at
    the dense parameters θ*, the expansion point of Theorem 1: the net's dense reference when
    it was pruned (``net.dense_state_dict_``) or ``reference`` when given, else the net's own
    parameters (an unpruned net is its own θ*).

    The caller's module is left as it was found: every submodule's train/eval flag and every
    parameter's ``.grad`` (None stays None, an existing gradient keeps its values) are restored,
    and parameters are never changed.

    Parameters
    ----------
    net : fitted skorch net or torch.nn.Module
        Typically a pruned :class:`~fairprune_sk.PrunableNetClassifier` (θ̂); its ``module_``
        must output logits (``criterion=nn.CrossEntropyLoss``).
    X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        Evaluation data, already preprocessed (numpy, pandas or tensor).
    y : array-like of shape (n_samples,)
        True labels among ``net.classes_`` (class indices if the net has no ``classes_``).
    sensitive_features : array-like, Series or DataFrame of shape (n_samples,) or (n_samples, k)
        Group membership; several columns give intersectional groups (a ``MultiIndex``).
    reference : fitted net, torch.nn.Module or state_dict, optional
        The dense net θ*, overriding ``net.dense_state_dict_``; same architecture as ``net``.
    max_iter : int, default=100
        Most Hessian-vector products per group for ``λ(H_a)``.
    tol : float, default=1e-4
        Relative accuracy of ``λ(H_a)`` (see :func:`top_hessian_eigenvalue`).
    batch_size : int, default=1024
        Samples per pass.
    random_state : None, int, RandomState or numpy Generator, default=None
        Seeds the eigen-solvers' starting vectors, group ``k``'s with
        ``torch_seed(random_state, offset=k)`` (:func:`fairprune_sk._validation.torch_seed`:
        an int ``s`` gives the torch seed ``s + k``), and the bootstrap resamples, as
        ``ExcessRiskFrame(..., random_state=random_state)`` does.
    eig_method : {"lanczos", "power"}, default="lanczos"
        Solver for ``λ(H_a)``; see :func:`top_hessian_eigenvalue`.
    n_boot : int >= 1, optional
        Bootstrap resamples of the evaluation rows for intervals of the audit columns, as in
        :class:`~fairprune_sk.ExcessRiskFrame` (then ``by_group`` gains
        ``<column>_ci_low`` / ``<column>_ci_high`` for ``excess_risk``,
        ``excess_accuracy_gap`` and ``accuracy_drop``, and ``frame.by_group_ci`` holds all).
    ci_quantiles : sequence of float in (0, 1), optional
        Quantiles of the intervals; ``(0.025, 0.975)`` with ``n_boot``.

    Attributes
    ----------
    by_group : pandas.DataFrame
        One row per group. First the audit columns of
        :data:`~fairprune_sk.metrics.FRAME_COLUMNS` (``count``, ``loss_dense``,
        ``loss_pruned``, ``excess_risk`` ``R(a) = loss_pruned − loss_dense`` (eq. 2),
        ``accuracy_dense``, ``accuracy_pruned``, ``accuracy_drop``, ``excess_accuracy_gap``
        ψ_g, ``flip_rate``); without a dense reference only ``count``, ``loss_dense`` and
        ``accuracy_dense`` (the net is its own θ*). Then the factors at θ*:
        ``gradient_norm`` ``‖g_a‖``, ``hessian_max_eig`` ``λ(H_a)``, ``boundary_closeness``
        (mean ``f(1 − f)``), ``input_grad_norm`` (mean ``‖∇_θ f(x)‖``, ``f`` the
        predicted-class probability: the gradient at each input, wrt the parameters). With a
        dense reference also: ``param_distance`` ``‖θ̂ − θ*‖`` (for a quantized net,
        ``θ̂`` is the grid's values: the distance is the quantization error, plus pruning's when
        the net was pruned first), ``bound_gradient_term``
        ``‖g_a‖‖θ̂ − θ*‖``, ``bound_hessian_term`` ``½ λ(H_a) ‖θ̂ − θ*‖²``, ``bound`` (their
        sum, Theorem 1 without the cubic rest) and ``taylor_estimate`` ``g_aᵀΔ + ½ ΔᵀH_aΔ``
        with ``Δ = θ̂ − θ*`` (the second-order Taylor expansion that Theorem 1 bounds, before
        Cauchy–Schwarz and the eigenvalue bound; usually much closer to the measurement than
        ``bound``).
    frame : ExcessRiskFrame or None
        The audit table of the pruned net against θ* (its ``fairness_violation`` is ξ, its
        ``max_excess_accuracy_gap`` max ψ_g); None without a dense reference.
    has_reference : bool
        Whether a dense reference was found (and so the bound columns exist).
    hessian_convergence : pandas.DataFrame
        Per group: ``n_iter`` (Hessian-vector products) and ``converged``.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from fairprune_sk import PrunableNetClassifier
    >>> from fairprune_sk.diagnostics import GroupDiagnostics
    >>> from fairprune_sk.models import MLP
    >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    >>> X = X.astype(np.float32)
    >>> group = np.where(X[:, 0] > 0, "a", "b")
    >>> net = PrunableNetClassifier(MLP, max_epochs=10, lr=0.1, verbose=0, random_state=0)
    >>> net = net.fit(X, y).prune(0.5)
    >>> diag = GroupDiagnostics(net, X, y, sensitive_features=group, max_iter=20,
    ...                         random_state=0)
    >>> diag.by_group[["excess_risk", "bound", "gradient_norm"]].shape
    (2, 3)
    >>> risk = diag.by_group["excess_risk"]  # R(a), eq. (2); the frame's xi is its spread
    >>> bool(np.isclose(diag.frame.fairness_violation, risk.max() - risk.min()))
    True
    >>> diag.correlations().index.tolist()  # Spearman correlation of each factor with R(a)
    ['gradient_norm', 'hessian_max_eig', 'boundary_closeness', 'input_grad_norm', 'bound',
     'taylor_estimate', 'count']
    >>> plt.close(diag.plot())
    """

    def __init__(
        self,
        net: Any,
        X: Any,
        y: Any,
        *,
        sensitive_features: Any,
        reference: Any = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        batch_size: int = 1024,
        random_state: Any = None,
        eig_method: str = "lanczos",
        n_boot: int | None = None,
        ci_quantiles: Any = None,
    ) -> None:
        check_args(
            _CONSTRAINTS,
            {"max_iter": max_iter, "tol": tol, "batch_size": batch_size,
             "random_state": random_state, "eig_method": eig_method},
            type(self).__name__,
        )
        check_bootstrap_params(n_boot, ci_quantiles, caller_name=type(self).__name__)
        module = _module_of(net, "net")
        kept = _KeptState(module)  # net.predict_proba (skorch) leaves the module in eval mode
        try:
            data = self._read_data(net, X, y, sensitive_features)
            dense_state = self._dense_reference(net, module, reference, data.classes)
            self.has_reference = dense_state is not None
            seeds = [torch_seed(random_state, offset=g) for g in range(data.groups.n_groups)]
            measured = self._measure(
                net, module, data, dense_state, seeds, max_iter=max_iter, tol=tol,
                batch_size=batch_size, eig_method=eig_method,
            )
            self.frame, audit = self._audit(
                data, measured, sensitive_features, n_boot, ci_quantiles, random_state
            )
            factors = self._factor_columns(data.groups, measured)
            self._by_group = pd.concat([audit, factors], axis=1)
            self._convergence = pd.DataFrame(
                {"n_iter": measured.n_iter, "converged": measured.converged},
                index=data.groups.index,
            )
        finally:
            kept.restore()

    # -- the steps of the constructor -------------------------------------------------------
    @staticmethod
    def _read_data(net: Any, X: Any, y: Any, sensitive_features: Any) -> _Data:
        """``X`` as an array, ``y`` as class indices of ``net.classes_``, the group codes."""
        X_arr = _as_input_array(X)
        y = np.asarray(y.detach().cpu() if torch.is_tensor(y) else y).ravel()
        if len(y) != len(X_arr):
            raise ValueError(f"y has {len(y)} samples but X has {len(X_arr)}")
        classes = getattr(net, "classes_", None) if not isinstance(net, nn.Module) else None
        y_index = (
            _as_class_indices(y, len(X_arr))
            if classes is None
            else encode_labels(y, np.asarray(classes))
        )
        groups = group_codes(sensitive_features, len(X_arr))
        return _Data(X_arr, y, y_index, classes, groups)

    @staticmethod
    def _dense_reference(
        net: Any, module: nn.Module, reference: Any, classes: Any
    ) -> Mapping[str, Any] | None:
        """θ*: ``reference``, else ``net.dense_state_dict_``, else None (warns if pruned)."""
        if reference is not None:
            ref_classes = getattr(reference, "classes_", None)
            if not isinstance(reference, nn.Module | Mapping) and classes is not None and (
                ref_classes is not None
                and not np.array_equal(np.asarray(ref_classes), np.asarray(classes))
            ):
                raise ValueError(
                    f"reference.classes_ {np.asarray(ref_classes).tolist()} differ from "
                    f"net.classes_ {np.asarray(classes).tolist()}"
                )
            return _state_of(reference)
        if getattr(net, "dense_state_dict_", None) is not None:
            return net.dense_state_dict_
        if pruning.is_pruned(module):
            warnings.warn(  # stacklevel: this step, __init__, the caller
                "the net carries pruning masks but no dense reference (dense_state_dict_ is "
                "None and reference= was not given): gradients and Hessians are taken at the "
                "pruned parameters and no excess risk or bound is reported",
                UserWarning,
                stacklevel=3,
            )
        return None

    def _measure(
        self, net: Any, module: nn.Module, data: _Data, dense_state: Mapping[str, Any] | None,
        seeds: list[int | None], *, max_iter: int, tol: float, batch_size: int, eig_method: str,
    ) -> _Measured:
        """Both nets' logits, then every factor at θ* (one evaluator each, no copies)."""
        classes = data.classes
        with _Evaluator(module) as ev_net:
            logits_net = ev_net.predict_logits(data.X, batch_size)
            if classes is not None and logits_net.shape[1] != len(classes):
                raise ValueError(
                    f"the module outputs {logits_net.shape[1]} classes but net.classes_ has "
                    f"{len(classes)}"
                )
            self._check_logits(net, data.X, logits_net)
            ev_star = ev_net.at(dense_state) if dense_state is not None else ev_net
            with ev_star:
                logits_star = (
                    ev_star.predict_logits(data.X, batch_size) if dense_state is not None
                    else logits_net
                )
                # θ̂ − θ* (None without a reference): the displacement compression made; for
                # a quantized net the grid's values minus θ*, i.e. the quantization error
                # (plus pruning's share when it was pruned first, and fine-tuning's drift)
                delta = (
                    ev_net.flat_params().to(ev_star.dtype) - ev_star.flat_params()
                    if dense_state is not None else None
                )
                measured = self._group_factors(
                    ev_star, data, delta, seeds, max_iter=max_iter, tol=tol,
                    batch_size=batch_size, eig_method=eig_method,
                )
                out_grad = ev_star.output_grad_norms(data.X, batch_size, "proba")
            distance = float(delta.double().norm()) if delta is not None else None
        return _Measured(logits_net, logits_star, *measured, out_grad, distance)

    @staticmethod
    def _group_factors(
        ev_star: _Evaluator, data: _Data, delta: torch.Tensor | None, seeds: list[int | None], *,
        max_iter: int, tol: float, batch_size: int, eig_method: str,
    ) -> tuple[list[float], list[float], list[float], list[int], list[bool]]:
        """Per group at θ*: ``‖g_a‖``, ``λ(H_a)``, the Taylor estimate and the solver's record."""
        grad_norms, eigs, taylor, n_iter, converged = [], [], [], [], []
        for g in range(data.groups.n_groups):
            idx = np.flatnonzero(data.groups.codes == g)
            # one kept gradient graph per group serves g_a, ΔᵀH_aΔ and λ(H_a)
            operator = _HessianOperator(ev_star, data.X, data.y_index, idx, batch_size)
            gradient = operator.gradient()
            grad_norms.append(float(gradient.double().norm()))
            if delta is not None:  # g_aᵀΔ + ½ ΔᵀH_aΔ: one more HVP per group
                curvature = _dot(delta, operator(delta))
                taylor.append(_dot(gradient, delta) + 0.5 * curvature)
            del gradient
            result = ev_star.top_eigenvalue(
                data.X, data.y_index, idx, method=eig_method, max_iter=max_iter, tol=tol,
                seed=seeds[g], batch_size=batch_size, operator=operator,
            )
            del operator
            # stacklevel 5: the warning helper, this step, _measure, __init__, the caller
            _warn_if_not_converged(
                result, max_iter, tol, f" of group {_label(data.groups.index[g])!r}", 5
            )
            eigs.append(result.value)
            n_iter.append(result.n_iter)
            converged.append(result.converged)
        return grad_norms, eigs, taylor, n_iter, converged

    def _audit(
        self, data: _Data, measured: _Measured, sensitive_features: Any, n_boot: int | None,
        ci_quantiles: Any, random_state: Any,
    ) -> tuple[ExcessRiskFrame | None, pd.DataFrame]:
        """The audit columns: one ExcessRiskFrame from both nets' probabilities."""
        proba_net, proba_star = measured.proba_net, measured.proba_star
        if data.classes is None:
            labels, frame_classes = data.y_index, np.arange(measured.logits_net.shape[1])
        else:
            labels, frame_classes = data.y, np.asarray(data.classes)
        has_reference = self.has_reference
        frame = ExcessRiskFrame.from_outputs(
            labels, proba_star, proba_net if has_reference else proba_star,
            sensitive_features=sensitive_features, classes=frame_classes,
            n_boot=n_boot if has_reference else None,
            ci_quantiles=ci_quantiles if has_reference else None,
            random_state=random_state,
        )
        if has_reference:
            audit = frame.by_group_with_ci()
        else:
            audit = frame.by_group[list(_OWN_REFERENCE_COLUMNS)]
            frame = None
        if not audit.index.equals(data.groups.index):  # both come from metrics.group_codes
            raise RuntimeError("the audit frame's groups differ from the diagnostics' groups")
        return frame, audit

    def _factor_columns(self, groups: GroupCodes, measured: _Measured) -> pd.DataFrame:
        """The factors at θ* per group and, with a dense reference, the Theorem 1 bound."""
        columns: dict[str, Any] = {
            "gradient_norm": np.asarray(measured.grad_norms),
            "hessian_max_eig": np.asarray(measured.eigs),
            "boundary_closeness": group_mean(boundary_closeness(measured.proba_star), groups),
            "input_grad_norm": group_mean(measured.out_grad, groups),
        }
        if self.has_reference:
            distance = measured.distance
            gradient_term = columns["gradient_norm"] * distance
            hessian_term = 0.5 * columns["hessian_max_eig"] * distance**2
            columns.update(
                param_distance=np.full(groups.n_groups, distance),
                bound_gradient_term=gradient_term,
                bound_hessian_term=hessian_term,
                bound=gradient_term + hessian_term,
                taylor_estimate=np.asarray(measured.taylor),
            )
        return pd.DataFrame(columns, index=groups.index)

    @staticmethod
    def _check_logits(net: Any, X: np.ndarray, logits: torch.Tensor) -> None:
        """The module must output logits: compare softmax with ``net.predict_proba``."""
        predict_proba = getattr(net, "predict_proba", None)
        if isinstance(net, nn.Module) or predict_proba is None or len(X) == 0:
            return
        n = min(len(X), 64)
        expected = np.asarray(predict_proba(X[:n]), dtype=np.float64)
        got = torch.softmax(logits[:n].double(), dim=1).numpy()
        if expected.shape != got.shape or not np.allclose(expected, got, atol=1e-3):
            raise ValueError(
                "softmax of the module's output does not match net.predict_proba: "
                "GroupDiagnostics needs a module that outputs logits, trained with "
                "criterion=torch.nn.CrossEntropyLoss"
            )

    @property
    def by_group(self) -> pd.DataFrame:
        """Per-group table (a copy); see the class docstring for the columns."""
        return self._by_group.copy()

    @property
    def hessian_convergence(self) -> pd.DataFrame:
        """Hessian-vector products used and convergence flag of ``λ(H_a)``, per group."""
        return self._convergence.copy()

    @validate_params(
        {"method": [StrOptions({"spearman", "kendall", "pearson"})]},
        prefer_skip_nested_validation=True,
    )
    def correlations(self, method: str = "spearman") -> pd.Series:
        """Correlation across groups of the measured excess risk ``R(a)`` with each factor.

        Theorem 1 and Proposition 1 predict positive correlations with ``gradient_norm``,
        ``hessian_max_eig``, ``boundary_closeness`` and ``bound``, and a negative one with
        ``count``; ``taylor_estimate`` shows whether the second-order model of the loss ranks
        the groups right at all.

        Parameters
        ----------
        method : {"spearman", "kendall", "pearson"}, default="spearman"
            Rank correlations suit the paper's qualitative claims.

        Returns
        -------
        pandas.Series
            Indexed by factor; NaN where a factor is constant across groups.

        Raises
        ------
        ValueError
            Without a dense reference (no excess risk), or for an unknown ``method``.
        """
        if not self.has_reference:
            raise ValueError(
                "no excess risk to correlate: the net was not pruned and no reference= "
                "was given"
            )
        frame = self._by_group
        factors = [c for c in CORRELATION_FACTORS if c in frame.columns]
        values = {}
        for factor in factors:
            pair = frame[["excess_risk", factor]].astype(np.float64)
            if pair[factor].nunique() < 2 or pair["excess_risk"].nunique() < 2:
                values[factor] = np.nan
            else:
                values[factor] = float(pair.corr(method=method).iloc[0, 1])
        return pd.Series(values, name=f"{method} correlation with excess_risk", dtype=np.float64)

    @validate_params({"figsize": [tuple, None]}, prefer_skip_nested_validation=True)
    def plot(self, *, figsize: tuple[float, float] | None = None):
        """Bars per group of the factors, as in the paper's Figures 2 and 3.

        Panels: gradient norm ``‖g_a‖``, Hessian eigenvalue ``λ(H_a)``, boundary closeness,
        and (with a dense reference) the Theorem 1 bound and the second-order estimate next to
        the measured ``R(a)`` on a symmetric log scale, otherwise the output gradient norm.

        Parameters
        ----------
        figsize : (float, float), optional
            Figure size in inches; ``(10, 7)`` if None.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return plot_group_factors(
            self._by_group, has_reference=self.has_reference, figsize=figsize
        )

    def __repr__(self) -> str:
        return (
            f"GroupDiagnostics(n_groups={len(self._by_group)}, "
            f"has_reference={self.has_reference})"
        )
