"""The group-balanced Taylor criterion: prune so that no group's estimated loss rises much.

``fair_taylor`` (unstructured) and ``fair_taylor_structured`` (whole output units) prune in
steps. At each step, on the network as it is then, every group ``a`` gets the Taylor estimate
of its mean loss change when a weight ``j`` is removed (:func:`group_taylor_saliency`), and the
weight's score is the worst group's:

.. math::

    s_j = \\max_{a:\\, n_a > 0} \\widehat{ΔL}_a(j), \\qquad
    \\widehat{ΔL}_a(j) = -g_{a,j} w_j \\quad
    \\left(+\\, \\tfrac12 F_{a,jj} w_j^2 \\text{ with } \\texttt{order=2}\\right).

The lowest scores are pruned: the weights whose removal raises no group's loss much. As the
estimates are recomputed at every step, a group whose loss has risen (whose gradient has
grown) protects its weights at the next step, which keeps the groups' losses balanced. Every
step prunes the same fraction ``step_fraction`` of what is still unpruned (a geometric schedule
in the density), and the last step reaches ``rate`` exactly.

This is FairGRAPE's idea (Lin et al., ECCV 2022: keep the weights that matter to every group,
decided before fine-tuning) with a minimax over groups in place of its greedy per-layer
selection of each group's share of the importance, and one ranking across layers (unstructured)
as ``global_magnitude``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from .._validation import Interval, validate_params
from ._graph import build_graph, norms_after
from ._importance import GroupBalancedTaylorImportance
from ._masks import effective_state_dict, mask_of, unpruned_copy
from ._plan import (
    Targets,
    count_units,
    global_target,
    kill_dead_units,
    layer_plan,
    select_targets,
    warn_emptied,
)
from ._saliency import (
    BATCH_SIZE,
    DATA,
    ORDER,
    GroupData,
    group_data,
    group_statistics,
    taylor_change,
)
from ._select import DENSITY, KEEP_DENSE, MODULE, RATE, prunable_tensors

__all__ = ["fair_taylor_prune"]

#: The defaults :func:`prune_module` uses for the data-driven methods.
ORDER_DEFAULT = 1
STEP_FRACTION_DEFAULT = 0.02
STEP_FRACTION: list[Any] = [Interval(Real, 0.0, 1.0, closed="right")]


# ----------------------------------------------------------------------------- schedule
def n_steps(density_now: float, density_target: float, step_fraction: float) -> int:
    """Steps of ``step_fraction`` each from ``density_now`` down to ``density_target``."""
    if density_target >= density_now or step_fraction >= 1.0 or density_target <= 0.0:
        return 1
    steps = math.log(density_target / density_now) / math.log(1.0 - step_fraction)
    return max(1, math.ceil(steps - 1e-9))


def schedule(pruned_now: int, target: int, size: int, steps: int) -> list[int]:
    """Cumulative pruned counts after each step, geometric in the density; the last is
    ``target``."""
    density_now, density_target = 1 - pruned_now / size, 1 - target / size
    counts = []
    for step in range(1, steps):
        density = density_now * (density_target / density_now) ** (step / steps)
        counts.append(min(target, max(pruned_now, round(size * (1 - density)))))
    return [*counts, target]


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """Ranks ``1 .. n`` of ``scores`` (ties in index order): positive and in the order of the
    scores, as ``L1Unstructured`` (which ranks ``|importance|``) needs."""
    out = torch.empty(scores.shape, dtype=torch.float64, device=scores.device)
    out[torch.argsort(scores, stable=True)] = torch.arange(
        1, scores.numel() + 1, dtype=torch.float64, device=scores.device
    )
    return out


# ----------------------------------------------------------------------------- unstructured
def refresh(plain: nn.Module, module: nn.Module) -> nn.Module:
    """Load the effective (masked) weights of ``module`` into its unpruned copy ``plain``."""
    plain.load_state_dict(effective_state_dict(module))
    return plain


def worst_group_scores(
    plain: nn.Module, targets: Targets, data: GroupData, order: int, batch_size: int
) -> dict[str, torch.Tensor]:
    """:math:`s_j` of every weight of ``targets``, computed on ``plain``, an unpruned copy of
    the module holding its effective weights."""
    chosen = {name for name, _, _ in targets}
    layers = [(name, sub) for name, sub, _ in prunable_tensors(plain) if name in chosen]
    stats = group_statistics(plain, layers, data, fisher=order == 2, batch_size=batch_size)
    present = data.counts > 0
    scores = {}
    for name, layer in layers:
        fisher = None if stats.fisher is None else stats.fisher[name]
        change = taylor_change(layer.weight.detach(), stats.gradient[name], fisher)
        scores[name] = change[present.to(change.device)].max(0).values
    return scores


def _prune_unstructured(
    module, targets, rate, min_layer_density, data, order, step_fraction, batch_size
) -> None:
    masks = [mask_of(sub, pname) for _, sub, pname in targets]
    sizes = [mask.numel() for mask in masks]
    total, already = sum(sizes), sum(int((mask == 0).sum()) for mask in masks)
    keep = [math.ceil(min_layer_density * size) for size in sizes]
    protected = sum(min(k, int((mask != 0).sum())) for k, mask in zip(keep, masks, strict=True))
    target = global_target(rate, min_layer_density, total, already, protected)
    params = [(sub, pname) for _, sub, pname in targets]
    steps = n_steps(1 - already / total, 1 - target / total, step_fraction)
    pruned = already
    plain = unpruned_copy(module)
    for count in schedule(already, target, total, steps):
        if count == pruned:  # nothing to prune: reparametrise only, as every method does
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0)
            continue
        scores = worst_group_scores(refresh(plain, module), targets, data, order, batch_size)
        flat = []
        for (name, sub, pname), k in zip(targets, keep, strict=True):
            score = scores[name].flatten().to(torch.float64)
            alive = mask_of(sub, pname).flatten().to(score.device) != 0
            score[~alive] = -math.inf  # already pruned: torch prune ranks the others only
            if k:
                top = torch.topk(score, min(k, int(alive.sum()))).indices
                score[top] = math.inf
            flat.append(score)
        importance = ranks(torch.cat(flat)).split(sizes)
        prune.global_unstructured(
            params,
            pruning_method=prune.L1Unstructured,
            importance_scores={
                (sub, pname): rank.view(mask.shape).to(mask.device)
                for (sub, pname), rank, mask in zip(params, importance, masks, strict=True)
            },
            amount=int(count - pruned),
        )
        pruned = count


# ----------------------------------------------------------------------------- structured
def worst_group_unit_scores(
    plain: nn.Module,
    graph: tp.DependencyGraph,
    targets: Targets,
    importance: GroupBalancedTaylorImportance,
) -> dict[str, torch.Tensor]:
    """Per selected layer, the worst group's estimated loss increase of removing each output
    unit: the max over groups of :meth:`GroupBalancedTaylorImportance.group_scores` on the
    layer's dependency group in ``graph``, the dependency graph of ``plain`` (an unpruned copy
    of the module holding its effective weights)."""
    subs = dict(plain.named_modules())
    present = importance.data.counts > 0
    scores = {}
    for name, _, _ in targets:
        layer = subs[name]
        handler = (
            tp.prune_linear_out_channels
            if isinstance(layer, nn.Linear)
            else tp.prune_conv_out_channels
        )
        group = graph.get_pruning_group(layer, handler, idxs=list(range(layer.weight.shape[0])))
        per_group = importance.group_scores(group)
        scores[name] = per_group[present.to(per_group.device)].max(0).values
    return scores


def _prune_structured(
    module,
    targets,
    rate,
    min_layer_density,
    data,
    order,
    step_fraction,
    batch_size,
    example_inputs,
) -> None:
    amounts = [amount for _, _, amount in layer_plan(targets, rate, min_layer_density, count_units)]
    units = [count_units(sub, pname) for _, sub, pname in targets]
    steps = max(
        n_steps(1 - pruned / size, 1 - (pruned + amount) / size, step_fraction)
        for (size, pruned), amount in zip(units, amounts, strict=True)
    )
    plans = [
        schedule(pruned, pruned + amount, size, steps)
        for (size, pruned), amount in zip(units, amounts, strict=True)
    ]
    param = next(module.parameters())
    example = (
        data.X[:2].to(device=param.device, dtype=param.dtype)
        if example_inputs is None
        else example_inputs
    )
    importance = GroupBalancedTaylorImportance(
        data.X, data.y, data.groups, order=order, batch_size=batch_size
    )
    norms = norms_after(module, example)
    kill_dead_units(targets, norms)  # units pruned before are dead while the others are scored
    plain = unpruned_copy(module)
    graph = build_graph(plain, example)
    for step in range(steps):
        scores = worst_group_unit_scores(refresh(plain, module), graph, targets, importance)
        for (name, sub, pname), plan in zip(targets, plans, strict=True):
            mask = mask_of(sub, pname)
            alive = mask.flatten(1).bool().any(dim=1)
            score = scores[name].to(device=alive.device, dtype=torch.float64)
            score[~alive] = -math.inf
            dead = torch.topk(score, plan[step], largest=False).indices
            units_alive = torch.ones_like(alive)
            units_alive[dead] = False
            new = units_alive.view(-1, *([1] * (mask.dim() - 1))).expand_as(mask)
            prune.custom_from_mask(sub, pname, mask=new.to(mask.dtype))
        kill_dead_units(targets, norms)


def prune_fair(
    module: nn.Module,
    targets: Targets,
    rate: float,
    min_layer_density: float,
    data: GroupData,
    *,
    structured: bool,
    order: int,
    step_fraction: float,
    batch_size: int,
    example_inputs: torch.Tensor | None,
) -> None:
    """Prune ``targets`` of ``module`` with the criterion (arguments already checked)."""
    if structured:
        _prune_structured(
            module,
            targets,
            rate,
            min_layer_density,
            data,
            order,
            step_fraction,
            batch_size,
            example_inputs,
        )
    else:
        _prune_unstructured(
            module, targets, rate, min_layer_density, data, order, step_fraction, batch_size
        )


# ----------------------------------------------------------------------------- public
@validate_params(
    {
        "module": MODULE,
        "rate": RATE,
        "X": DATA,
        "y": DATA,
        "groups": DATA,
        "structured": ["boolean"],
        "order": ORDER,
        "step_fraction": STEP_FRACTION,
        "keep_dense": KEEP_DENSE,
        "min_layer_density": DENSITY,
        "batch_size": BATCH_SIZE,
        "example_inputs": [torch.Tensor, None],
    },
    prefer_skip_nested_validation=True,
)
def fair_taylor_prune(
    module: nn.Module,
    rate: float,
    X: Any,
    y: Any,
    groups: Any,
    *,
    structured: bool = False,
    order: int = ORDER_DEFAULT,
    step_fraction: float = STEP_FRACTION_DEFAULT,
    keep_dense: Iterable[str] | str = (),
    min_layer_density: float = 0.0,
    batch_size: int = 256,
    example_inputs: torch.Tensor | None = None,
) -> nn.Module:
    """Prune ``module`` in place with the group-balanced Taylor criterion.

    ``prune_module(module, rate, "fair_taylor", X=X, y=y, groups=groups)`` is
    ``fair_taylor_prune(module, rate, X, y, groups)``, and ``"fair_taylor_structured"`` is
    ``structured=True``; this function also takes the criterion's ``order`` and
    ``step_fraction``.

    At each step, on the network pruned so far, a weight's score is the largest estimated
    loss increase of any group when it is removed,

    .. math::

        s_j = \\max_{a:\\, n_a > 0} \\left(-g_{a,j} w_j
              + [\\texttt{order}=2]\\, \\tfrac12 F_{a,jj} w_j^2\\right),

    with :math:`g_a` the gradient of group ``a``'s mean cross-entropy on the logits and
    :math:`F_{a,jj}` its diagonal empirical Fisher (the mean of the squared per-sample
    gradients, standing for the Hessian diagonal); the lowest scores are pruned, ranked across
    all selected layers. With ``structured=True`` whole output units are pruned instead, the
    same fraction in each layer but the last (as ``structured_l1``), each unit scored by the
    max over groups of :meth:`GroupBalancedTaylorImportance.group_scores` (the sum of the
    estimates over the unit's weights and the next layers' input columns); a pruned unit is
    dead (its weights, bias and following BatchNorm channel masked). Every step prunes
    ``step_fraction`` of what is still unpruned, so that the estimates, recomputed at every
    step, stay local; the last step reaches ``rate`` exactly.

    Parameters
    ----------
    module : torch.nn.Module
        Returns logits of shape (n_samples, n_classes); modified in place (torch prune masks).
    rate : float in [0, 1)
        Target total fraction of pruned weights of the selected layers (of output units per
        layer with ``structured=True``); cumulative, as in :func:`prune_module`.
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Rows that ``module`` accepts.
    y : array-like or torch.Tensor of shape (n_samples,)
        Integer class indices ``0 .. n_classes - 1``.
    groups : array-like or torch.Tensor of shape (n_samples,)
        Integer group codes ``0 .. n_groups - 1``.
    structured : bool, default=False
        Prune output units instead of single weights.
    order : {1, 2}, default=1
        Taylor order of the per-group estimate (2 adds the Fisher term).
    step_fraction : float in (0, 1], default=0.02
        Fraction of the still unpruned weights (units) pruned at each step; 1 prunes in one
        step. Each step costs one forward and backward pass over ``X``, and there are about
        :math:`\\log(1 - \\text{rate}) / \\log(1 - \\text{step\\_fraction})` steps (114 at rate
        0.9, 149 at 0.95, 228 at 0.99 with the default; 45, 59 and 90 with 0.05).
    keep_dense : iterable of str or str, default=()
        Layers to leave dense (see :func:`prunable_tensors`).
    min_layer_density : float in [0, 1], default=0.0
        Every selected layer keeps at least ``ceil(min_layer_density * n)`` of its ``n``
        weights (units): its highest-scored ones at every step.
    batch_size : int, default=256
        Rows per forward pass; every batch holds the rows of one group.
    example_inputs : torch.Tensor, optional
        With ``structured=True``: a batch to trace the network with Torch-Pruning (by default
        the first two rows of ``X``).

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Raises
    ------
    ValueError
        Naming a missing or invalid ``X``, ``y`` or ``groups``; on a rate below the current
        sparsity or made unreachable by ``min_layer_density``; if no layer is left to prune.

    Warns
    -----
    UserWarning
        If a layer ends with all its weights pruned, naming it.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from fairprune_sk.pruning import fair_taylor_prune, sparsity
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> X, y, groups = torch.randn(90, 8), torch.randint(0, 3, (90,)), torch.arange(90) % 3
    >>> net = fair_taylor_prune(net, 0.75, X, y, groups)
    >>> sparsity(net)  # round(0.75 * 176) of the 176 weights
    0.75
    """
    method = "fair_taylor_structured" if structured else "fair_taylor"
    data = group_data(X, y, groups, method=method)
    rate, min_layer_density = float(rate), float(min_layer_density)
    targets = select_targets(module, rate, method, keep_dense, structured)
    if not targets:
        return module
    prune_fair(
        module,
        targets,
        rate,
        min_layer_density,
        data,
        structured=structured,
        order=int(order),
        step_fraction=float(step_fraction),
        batch_size=int(batch_size),
        example_inputs=example_inputs,
    )
    warn_emptied(targets, stacklevel=3)
    return module
