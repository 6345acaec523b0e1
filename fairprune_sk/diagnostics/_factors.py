"""The factors of Theorem 1, Theorem 2 and Proposition 1, for any module that outputs logits.

:func:`group_gradient_norms` ``‖g_a‖``, :func:`hessian_vector_product` ``H v``,
:func:`top_hessian_eigenvalue` ``λ(H_a)``, :func:`boundary_closeness` ``f(1 − f)`` and
:func:`output_gradient_norms` ``‖∇_θ f(x)‖``: each checks its arguments, then measures through
one :class:`_Evaluator`. Arguments are checked by sklearn's ``validate_params`` against the
constraints below (:data:`SOLVER_CONSTRAINTS` also serve :class:`GroupDiagnostics`).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import RANDOM_STATE, Interval, StrOptions, validate_params
from ._checks import _as_class_indices, _as_group_codes, _as_input_array
from ._eigen import EIGEN_METHODS, _warn_if_not_converged
from ._evaluator import _Evaluator

#: Outputs ``f`` accepted by :func:`output_gradient_norms`.
OUTPUTS = ("proba", "margin")

#: Constraints of the arguments every measuring function takes.
_COMMON_CONSTRAINTS: dict[str, list[Any]] = {
    "module": [nn.Module],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "params": [Mapping, None],
}

#: Constraints of the eigen-solver's arguments (``method`` is ``eig_method`` in
#: :class:`GroupDiagnostics`).
SOLVER_CONSTRAINTS: dict[str, list[Any]] = {
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "random_state": RANDOM_STATE,
    "method": [StrOptions(set(EIGEN_METHODS))],
}


@validate_params(_COMMON_CONSTRAINTS, prefer_skip_nested_validation=True)
def group_gradient_norms(
    module: nn.Module,
    X: Any,
    y: Any,
    groups: Any,
    *,
    batch_size: int = 1024,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Norms of the group gradients ``‖g_a‖ = ‖∇_θ J(θ; D_a)‖`` (Theorem 1, Proposition 1).

    ``J(θ; D_a)`` is the mean cross-entropy over the samples of group ``a``. Each group's
    gradient is accumulated over minibatches of that group only (sum of per-sample losses,
    divided by ``n_a`` at the end): one backward per batch, one pass over the data in all, and
    never more than one batch's graph and one gradient vector in memory.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs logits of shape (batch, n_classes) (one column: a binary logit).
    X : array-like of shape (n_samples, ...)
        Inputs, already preprocessed; cast to the module's dtype batch by batch.
    y : array-like of shape (n_samples,)
        Integer class indices ``0 .. n_classes - 1``.
    groups : array-like of shape (n_samples,)
        Integer group codes ``0 .. n_groups - 1``.
    batch_size : int, default=1024
        Samples per forward/backward pass.
    params : mapping of str to Tensor, optional
        Point θ at which to differentiate, e.g. the dense reference ``net.dense_state_dict_``;
        a state_dict with plain names (buffers in it are used too). The module's current
        (effective) parameters if None.

    Returns
    -------
    ndarray of shape (n_groups,)
        ``‖g_a‖`` per group code; NaN for a code without samples.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> module = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(10, 3).numpy(), [0, 1] * 5
    >>> group_gradient_norms(module, X, y, [0] * 6 + [1] * 4).shape
    (2,)
    """
    X = _as_input_array(X)
    y = _as_class_indices(y, len(X))
    codes, n_groups = _as_group_codes(groups, len(X))
    norms = np.full(n_groups, np.nan)
    with _Evaluator(module, params) as ev:
        for g in range(n_groups):
            idx = np.flatnonzero(codes == g)
            if len(idx):
                norms[g] = float(ev.gradient(X, y, idx, batch_size).double().norm())
    return norms


@validate_params(
    {**_COMMON_CONSTRAINTS, "vector": ["array-like"]}, prefer_skip_nested_validation=True
)
def hessian_vector_product(
    module: nn.Module,
    X: Any,
    y: Any,
    vector: torch.Tensor,
    *,
    batch_size: int = 1024,
    params: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Hessian-vector product ``H v`` with ``H = ∇²_θ J(θ; D)``, never forming ``H``.

    On one group's samples ``D_a`` this is the group Hessian ``H_a`` of Theorem 1, whose
    quadratic form ``½ Δᵀ H_a Δ`` (``Δ = θ̂ − θ*``) is the second-order term of the excess risk
    ``R(a)`` of eq. (2).

    Double backward per minibatch: ``H v = ∇_θ (∇_θ J · v)``, summed over batches and divided
    by the number of samples, so the result does not depend on ``batch_size`` (up to rounding).
    Each product is a forward pass and two backward passes per batch; repeated products on the
    same data (an eigen-solver) are cheaper through :func:`top_hessian_eigenvalue`, which keeps
    the first-order graph between them and so needs one backward pass per product.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs logits.
    X : array-like of shape (n_samples, ...)
        Inputs of the data set ``D`` (e.g. one group ``D_a``).
    y : array-like of shape (n_samples,)
        Integer class indices.
    vector : Tensor of shape (n_params,)
        Flat vector over the trainable parameters, in the order of
        ``module.named_parameters()`` (a pruned ``weight_orig`` stands for ``weight``).
    batch_size : int, default=1024
        Samples per pass.
    params : mapping of str to Tensor, optional
        Point θ of the Hessian; the module's current parameters if None.

    Returns
    -------
    Tensor of shape (n_params,)
        ``H v``, on the module's device and in its dtype.

    Examples
    --------
    >>> import torch
    >>> from fairprune_sk.diagnostics import hessian_vector_product
    >>> _ = torch.manual_seed(0)
    >>> module = torch.nn.Linear(3, 2)  # 8 parameters: weight (2, 3), then bias (2,)
    >>> X, y = torch.randn(10, 3).numpy(), [0, 1] * 5
    >>> hessian_vector_product(module, X, y, torch.ones(8)).shape
    torch.Size([8])
    """
    X = _as_input_array(X)
    y = _as_class_indices(y, len(X))
    with _Evaluator(module, params) as ev:
        vector = torch.as_tensor(vector)
        if vector.ndim != 1 or vector.numel() != ev.n_params:
            raise ValueError(
                f"vector must be 1-D with one entry per trainable parameter ({ev.n_params}); "
                f"got shape {tuple(vector.shape)}"
            )
        if len(X) == 0:
            raise ValueError("X has no samples")
        return ev.hvp(X, y, np.arange(len(X)), vector, batch_size)


@validate_params(
    {**_COMMON_CONSTRAINTS, **SOLVER_CONSTRAINTS}, prefer_skip_nested_validation=True
)
def top_hessian_eigenvalue(
    module: nn.Module,
    X: Any,
    y: Any,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    random_state: Any = None,
    batch_size: int = 1024,
    params: Mapping[str, Any] | None = None,
    method: str = "lanczos",
) -> float:
    """Top eigenvalue ``λ(H)`` of the loss Hessian on ``(X, y)`` (``λ(H_a)`` of Theorem 1).

    Iterates on Hessian-vector products ``H v = ∇_θ (∇_θ J · v)``; the Hessian is never
    formed. The first product builds the gradient's autograd graph (a forward pass and a
    backward pass with ``create_graph``) and keeps it for the later ones, up to 256 MiB of saved
    activations; batches beyond that are recomputed at every product. Every later product is
    then one backward pass through the kept graph (``benchmarks/bench_hessian.py`` prints its
    cost in gradient passes). Memory: the kept graph plus a few parameter vectors.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs logits.
    X : array-like of shape (n_samples, ...)
        The data set, e.g. one group's samples ``D_a``.
    y : array-like of shape (n_samples,)
        Integer class indices.
    max_iter : int, default=100
        Most Hessian-vector products.
    tol : float, default=1e-4
        Relative accuracy: Lanczos stops when the residual of its top Ritz pair is below
        ``tol · |λ|`` (which bounds the error of λ by the same amount); power iteration when
        the Rayleigh quotient changes by less than ``tol · |λ|``. ``tol=0`` runs ``max_iter``.
    random_state : None, int, RandomState or numpy Generator, default=None
        Seeds the starting vector through :func:`fairprune_sk._validation.torch_generator`
        (an int is the torch seed itself).
    batch_size : int, default=1024
        Samples per pass.
    params : mapping of str to Tensor, optional
        Point θ of the Hessian (e.g. the dense reference θ*); the module's current
        parameters if None.
    method : {"lanczos", "power"}, default="lanczos"
        ``"lanczos"`` returns the largest *algebraic* eigenvalue, the paper's
        ``λ(H) = λ_max``. ``"power"`` (power iteration) returns the eigenvalue of largest
        *magnitude*, with its sign; near a minimum the Hessian is dominated by its positive
        part and both agree, but at a saddle or far from convergence a large negative
        eigenvalue can win.

    Returns
    -------
    float
        The eigenvalue estimate. A :class:`~sklearn.exceptions.ConvergenceWarning` is issued
        when ``tol`` was not reached within ``max_iter``.

    Notes
    -----
    Power iteration converges linearly with rate ``|λ₂/λ₁|``; Lanczos needs far fewer
    products for the same accuracy (it is optimal among Krylov methods) and keeps only three
    vectors, without reorthogonalisation.

    Examples
    --------
    Against the largest eigenvalue of the full Hessian, which a tiny model can afford:

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from fairprune_sk.diagnostics import top_hessian_eigenvalue
    >>> _ = torch.manual_seed(0)
    >>> module = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(10, 3), torch.tensor([0, 1] * 5)
    >>> lam = top_hessian_eigenvalue(module, X.numpy(), y.numpy(), random_state=0)
    >>> def loss(theta):  # the same loss as a function of the 8 flat parameters
    ...     return F.cross_entropy(X @ theta[:6].reshape(2, 3).T + theta[6:], y)
    >>> theta = torch.cat([module.weight.detach().ravel(), module.bias.detach()])
    >>> H = torch.autograd.functional.hessian(loss, theta)
    >>> bool(abs(lam - torch.linalg.eigvalsh(H).max()) < 1e-3 * lam)
    True
    """
    X = _as_input_array(X)
    y = _as_class_indices(y, len(X))
    if len(X) == 0:
        raise ValueError("X has no samples")
    with _Evaluator(module, params) as ev:
        result = ev.top_eigenvalue(
            X, y, np.arange(len(X)), method=method, max_iter=max_iter, tol=tol,
            seed=random_state,
            batch_size=batch_size,
        )
    # stacklevel 4: the warning helper, this function, validate_params' wrapper, the caller
    _warn_if_not_converged(result, max_iter, tol, "", 4)
    return result.value


@validate_params({"proba": ["array-like"]}, prefer_skip_nested_validation=True)
def boundary_closeness(proba: Any) -> np.ndarray:
    """Closeness of each sample to the decision boundary (Theorem 2).

    Binary nets: ``f(x)(1 − f(x))`` with ``f(x) = P(class 1 | x)``; it is 1/4 on the boundary
    and tends to 0 far from it. Several classes: ``p_max(1 − p_max)`` with ``p_max`` the
    largest class probability. For two classes ``p_max`` is ``f`` or ``1 − f``, so both
    definitions coincide.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Class probabilities (rows summing to one), or ``P(class 1)`` of a binary model.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> boundary_closeness([[0.5, 0.5], [0.9, 0.1]]).round(2)
    array([0.25, 0.09])
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1:
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(
            "proba must have shape (n_samples, n_classes) with n_classes >= 2, or "
            f"(n_samples,) for P(class 1); got {proba.shape}"
        )
    if proba.size and (np.nanmin(proba) < -1e-6 or np.nanmax(proba) > 1 + 1e-6):
        raise ValueError(
            "proba must hold probabilities in [0, 1] (pass predict_proba, not logits); "
            f"got values in [{np.nanmin(proba):.3g}, {np.nanmax(proba):.3g}]"
        )
    top = proba.max(axis=1)
    return top * (1.0 - top)


@validate_params(
    {**_COMMON_CONSTRAINTS, "output": [StrOptions(set(OUTPUTS))]},
    prefer_skip_nested_validation=True,
)
def output_gradient_norms(
    module: nn.Module,
    X: Any,
    *,
    batch_size: int = 1024,
    params: Mapping[str, Any] | None = None,
    output: str = "proba",
) -> np.ndarray:
    """Per-sample norm of the gradient of the model output wrt the parameters, ``‖∇_θ f(x)‖``.

    For cross-entropy the chain rule gives ``∇_θ ℓ(x, y) = J_z(x)ᵀ (p(x) − e_y)``: each sample's
    loss gradient is its error times the sensitivity of the output to the parameters, the two
    ingredients of Proposition 1. This function measures the second.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs logits.
    X : array-like of shape (n_samples, ...)
        Inputs.
    batch_size : int, default=1024
        Samples per vectorised pass (``torch.func.vmap(grad)``); per-sample gradients are
        further chunked so that at most about 64M gradient entries are held at once, which
        keeps CNN-sized modules within memory.
    params : mapping of str to Tensor, optional
        Point θ; the module's current parameters if None.
    output : {"proba", "margin"}, default="proba"
        ``"proba"``: ``f`` is the probability of the predicted class (for a binary net
        ``‖∇_θ P(class 1)‖``, since the two class probabilities have opposite gradients).
        ``"margin"``: ``f`` is the logit margin ``z_ŷ − max_{k≠ŷ} z_k``.

    Returns
    -------
    ndarray of shape (n_samples,)

    Notes
    -----
    The module's forward must work on single samples under ``torch.func.vmap`` (no
    ``.item()`` or data-dependent control flow); standard layers, batch norm in eval mode
    and dropout (off in eval mode) do.

    Examples
    --------
    >>> import torch
    >>> from fairprune_sk.diagnostics import output_gradient_norms
    >>> _ = torch.manual_seed(0)
    >>> norms = output_gradient_norms(torch.nn.Linear(3, 2), torch.randn(10, 3).numpy())
    >>> norms.shape, bool((norms >= 0).all())
    ((10,), True)
    """
    X = _as_input_array(X)
    with _Evaluator(module, params) as ev:
        return ev.output_grad_norms(X, batch_size, output)
