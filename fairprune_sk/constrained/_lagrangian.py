"""The batch Lagrangian of each constraint target, one small torch function per target.

Both take the batch's per-sample losses ``ℓ_i`` (criterion with ``reduction="none"``), its mean
loss ``J`` (as the plain net computes it), the group codes and the multipliers λ, and return
the value whose gradient the primal step follows. With ``damped=True`` the Lagrangian is
normalised by ``1 + Σ_a λ_a`` (``dual_dynamics="damped"``), so the primal step size does not
grow with the multipliers. A group absent from the batch adds nothing.
"""

from __future__ import annotations

import torch

__all__ = ["ceag_lagrangian", "gradient_norm_lagrangian", "group_loss_lagrangian", "group_sums"]


def group_sums(
    values: torch.Tensor, codes: torch.Tensor, n_groups: int, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group ``Σ_{i∈a} w_i v_i`` and ``Σ_{i∈a} w_i`` (``w = 1`` without ``weight``).

    Parameters
    ----------
    values : Tensor of shape (n,)
    codes : Tensor of int64, shape (n,)
        Group code of every sample, in ``0 .. n_groups - 1``.
    n_groups : int
    weight : Tensor of shape (n,), optional

    Returns
    -------
    sums, weights : Tensor of shape (n_groups,)
    """
    weight = torch.ones_like(values) if weight is None else weight.to(values.dtype)
    sums = values.new_zeros(n_groups).index_add(0, codes, weight * values)
    weights = values.new_zeros(n_groups).index_add(0, codes, weight)
    return sums, weights


def group_loss_lagrangian(
    loss: torch.Tensor,
    losses: torch.Tensor,
    codes: torch.Tensor,
    multipliers: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    reference_losses: torch.Tensor | None = None,
    damped: bool = False,
) -> torch.Tensor:
    """``J + Σ_a λ_a |E_a − E|`` on the batch: the paper's equal group losses (eq. 7/8).

    ``E_a`` and ``E`` are the (``w``-weighted) means over the group's and the batch's samples of
    ``e_i = ℓ_i`` (``constraint_target="group_loss"``), or of the excess loss
    ``e_i = ℓ_i − ℓ*_i`` against the dense net θ* (``"excess_risk"``, ``reference_losses``).

    Parameters
    ----------
    loss : Tensor, scalar
        The batch's mean loss ``J``.
    losses : Tensor of shape (n,)
        Per-sample losses ``ℓ_i``.
    codes : Tensor of int64, shape (n,)
    multipliers : Tensor of shape (n_groups,)
        λ, one per group (constants for θ).
    weight : Tensor of shape (n,), optional
        Per-sample weights ``w_i``.
    reference_losses : Tensor of shape (n,), optional
        θ*'s per-sample losses ``ℓ*_i``.
    damped : bool, default=False
        Divide by ``1 + Σ_a λ_a``.

    Returns
    -------
    Tensor, scalar
    """
    multipliers = multipliers.to(losses.dtype)
    excess = losses if reference_losses is None else losses - reference_losses.to(losses.dtype)
    sums, weights = group_sums(excess, codes, len(multipliers), weight)
    present = weights > 0
    overall = sums.sum() / weights.sum()
    gap = torch.where(present, sums / weights.clamp_min(1e-12) - overall, 0.0)
    lagrangian = loss + (multipliers * gap.abs()).sum()
    return lagrangian / (1.0 + multipliers.sum()) if damped else lagrangian


def ceag_lagrangian(
    loss: torch.Tensor,
    losses: torch.Tensor,
    codes: torch.Tensor,
    multipliers: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    damped: bool = True,
    loss_multipliers: torch.Tensor | None = None,
) -> torch.Tensor:
    """``J + Σ_a λ_a J_a`` on the batch: CEAG's primal step (Hashemizadeh et al., *Balancing Act*).

    CEAG constrains ψ_a ≤ ε through the differentiable proxy
    ``(J(θ; B_a) − J(θ*; B_a)) − sg[J(θ; B) − J(θ*; B)]``, ``sg`` a stop-gradient: θ*'s losses
    and the overall term are constants for θ, so the proxy's gradient is that of the group's
    mean loss ``J_a`` alone, and those constants are left out of the value. With the overall
    term inside the gradient the penalty would reward raising everyone's loss (a smaller ψ_a
    is also reached through a larger overall drop).

    Parameters
    ----------
    loss : Tensor, scalar
        The batch's mean loss ``J``.
    losses : Tensor of shape (n,)
        Per-sample losses.
    codes : Tensor of int64, shape (n,)
    multipliers : Tensor of shape (n_groups,)
    weight : Tensor of shape (n,), optional
    damped : bool, default=True
        Divide by ``1 + Σ_a λ_a`` (``+ Σ_a ν_a`` with ``loss_multipliers``).
    loss_multipliers : Tensor of shape (n_groups,), optional
        ν of the one-sided equal-loss constraints ``J_a − J ≤ 0`` (``loss_dual_lr``), which add
        ``Σ_a ν_a (J_a − sg[J])``: as in CEAG's proxy the overall loss is a constant for θ, so
        the term lowers the losses of the groups above the mean and never raises the others'
        (with ``J`` inside the gradient it would, by ``−Σ_a ν_a ∇J``).

    Returns
    -------
    Tensor, scalar
    """
    multipliers = multipliers.to(losses.dtype)
    sums, weights = group_sums(losses, codes, len(multipliers), weight)
    present = weights > 0
    group_mean = torch.where(present, sums / weights.clamp_min(1e-12), 0.0)
    lagrangian = loss + (multipliers * group_mean).sum()
    normaliser = 1.0 + multipliers.sum()
    if loss_multipliers is not None:
        loss_multipliers = loss_multipliers.to(losses.dtype)
        gap = torch.where(present, group_mean - loss.detach(), 0.0)
        lagrangian = lagrangian + (loss_multipliers * gap).sum()
        normaliser = normaliser + loss_multipliers.sum()
    return lagrangian / normaliser if damped else lagrangian


def gradient_norm_lagrangian(
    loss: torch.Tensor,
    losses: torch.Tensor,
    codes: torch.Tensor,
    multipliers: torch.Tensor,
    params: list[torch.Tensor],
    *,
    weight: torch.Tensor | None = None,
    damped: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``J + Σ_a λ_a |‖∇J_a‖ − ‖∇J‖|`` on the batch: the paper's eq. (6), equal group gradient
    norms (the first factor of Theorem 1's bound), by double backward.

    Each present group's gradient norm is differentiated through (``create_graph=True``), so a
    batch costs one gradient per present group and one overall, each with its graph kept, on top
    of the usual backward: the price the paper calls expensive. The Hessian term of eq. (6) is
    not included.

    Parameters
    ----------
    loss : Tensor, scalar
        The batch's mean loss ``J``.
    losses : Tensor of shape (n,)
    codes : Tensor of int64, shape (n,)
    multipliers : Tensor of shape (n_groups,)
    params : list of Tensor
        The parameters θ the gradients are taken with respect to.
    weight : Tensor of shape (n,), optional
    damped : bool, default=False
        Divide by ``1 + Σ_a λ_a``.

    Returns
    -------
    lagrangian : Tensor, scalar
    gaps : Tensor of shape (n_groups,)
        ``‖∇J_a‖ − ‖∇J‖`` (detached; NaN for groups absent from the batch).
    """
    multipliers = multipliers.to(losses.dtype)
    sums, weights = group_sums(losses, codes, len(multipliers), weight)

    def norm(value: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(value, params, create_graph=True, allow_unused=True)
        return torch.sqrt(sum((g**2).sum() for g in grads if g is not None))

    overall = norm(loss)
    gaps = torch.full((len(multipliers),), float("nan"), dtype=losses.dtype,
                      device=losses.device)
    penalty = loss.new_zeros(())
    for group in torch.nonzero(weights > 0).flatten().tolist():
        gap = norm(sums[group] / weights[group]) - overall
        gaps[group] = gap.detach()
        if multipliers[group] > 0:
            penalty = penalty + multipliers[group] * gap.abs()
    lagrangian = loss + penalty
    return (lagrangian / (1.0 + multipliers.sum()) if damped else lagrangian), gaps
