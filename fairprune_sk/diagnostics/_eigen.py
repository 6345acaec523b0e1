"""Eigenvalue solvers on a symmetric operator ``v ↦ H v``: Lanczos and power iteration.

The operator is any callable on flat vectors (a :class:`_HessianOperator`); the Hessian is
never formed. Each iteration is one Hessian-vector product.

Lanczos is written here rather than taken from scipy's ``eigsh``: ARPACK spends at least
``ncv`` products (20 by default) whatever ``tol``, more than this recurrence needs to the same
accuracy on a trained net (``benchmarks/bench_hessian.py`` prints both side by side), and it
can neither stop after ``max_iter`` products nor return an estimate when it did not converge.
The tests use ``eigsh`` as the oracle.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

#: Eigenvalue solvers accepted by :func:`top_hessian_eigenvalue`.
EIGEN_METHODS = ("lanczos", "power")


@dataclass
class _EigenResult:
    """Outcome of an eigenvalue solver.

    Attributes
    ----------
    value : float
        The eigenvalue estimate.
    n_iter : int
        Hessian-vector products used.
    converged : bool
        Whether the stopping criterion was met within ``max_iter``.
    """

    value: float
    n_iter: int
    converged: bool


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


def _power_iteration(operator, v0: torch.Tensor, *, max_iter: int, tol: float) -> _EigenResult:
    """Largest-magnitude eigenvalue (with its sign) by power iteration.

    Stops when the Rayleigh quotient changes by at most ``tol`` relative to its size.
    """
    v = v0 / v0.norm()
    value = math.nan
    for k in range(1, max_iter + 1):
        w = operator(v)
        new = _dot(v, w)  # Rayleigh quotient vᵀHv, ‖v‖ = 1
        w_norm = float(w.norm())
        if w_norm == 0.0:  # H v = 0: v is in the null space, H may be zero
            return _EigenResult(0.0, k, True)
        if not math.isnan(value) and abs(new - value) <= tol * abs(new):
            return _EigenResult(new, k, True)
        value = new
        v = w / w_norm
    return _EigenResult(value, max_iter, False)


def _lanczos(operator, v0: torch.Tensor, *, max_iter: int, tol: float) -> _EigenResult:
    """Largest (algebraic) eigenvalue by the Lanczos three-term recurrence.

    Only three vectors are kept (no full reorthogonalisation: the extreme Ritz value converges
    first and loss of orthogonality only duplicates converged values). Stops when the residual
    ``‖H y − θ y‖ = β_{k+1} |s_k|`` of the top Ritz pair is at most ``tol · |θ|``, which bounds
    the error of θ by ``tol · |θ|`` (Kahan–Parlett).
    """
    v = v0 / v0.norm()
    v_prev = torch.zeros_like(v)
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    theta = math.nan
    scale = 0.0
    for k in range(1, max_iter + 1):
        w = operator(v)
        alpha = _dot(w, v)
        w = w - alpha * v - beta * v_prev
        w = w - _dot(w, v) * v  # local reorthogonalisation against rounding
        beta_next = float(w.norm())
        alphas.append(alpha)
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        ritz, vectors = np.linalg.eigh(T)
        theta = float(ritz[-1])
        residual = beta_next * abs(float(vectors[-1, -1]))
        scale = max(scale, abs(alpha), beta_next, float(np.abs(ritz).max()))
        if residual <= tol * abs(theta) or beta_next <= 1e-12 * max(scale, 1e-300):
            return _EigenResult(theta, k, True)
        betas.append(beta_next)
        v_prev, v, beta = v, w / beta_next, beta_next
    return _EigenResult(theta, max_iter, False)


def _warn_if_not_converged(
    result: _EigenResult, max_iter: int, tol: float, where: str, stacklevel: int = 3
) -> None:
    if not result.converged and tol > 0:
        warnings.warn(
            f"the top Hessian eigenvalue{where} did not reach tol={tol} in max_iter={max_iter} "
            f"Hessian-vector products (estimate {result.value:.6g}); increase max_iter",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
