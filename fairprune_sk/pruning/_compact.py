"""Physically removing the dead channels of a structurally pruned network (Torch-Pruning).

Torch-Pruning's ``DependencyGraph`` finds, for every Linear/Conv layer, the group of layers
whose channels are coupled to its outputs (its BatchNorm, the other side of a residual
addition, the inputs of the next layers, through flatten and concatenation) and removes one
channel from all of them at once. This module decides *which* channels can be removed without
changing the outputs, and leaves the surgery to Torch-Pruning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .._validation import validate_params
from ._graph import OPTYPE, build_graph, example_batch
from ._masks import check_not_quantized, unpruned_copy
from ._select import MODULE, PRUNABLE_TYPES

__all__ = ["compact"]

# node types a removed channel may pass through; anything else coupled to a dead channel is
# refused (a LayerNorm or GroupNorm normalises across channels, an Embedding or attention has
# its own index semantics)
_SUPPORTED = {
    OPTYPE.CONV, OPTYPE.LINEAR, OPTYPE.BN, OPTYPE.ELEMENTWISE, OPTYPE.RESHAPE, OPTYPE.CONCAT,
    OPTYPE.SPLIT,
}  # fmt: skip
_HELP = (
    "compact removes channels through Linear, Conv (groups=1) and BatchNorm layers and "
    "element-wise, pooling, reshape, concatenation and split operations"
)


@validate_params(
    {"module": MODULE, "example_inputs": [torch.Tensor, None]},
    prefer_skip_nested_validation=True,
)
def compact(module: nn.Module, example_inputs: torch.Tensor | None = None) -> nn.Module:
    """Physically remove the dead output channels of a structurally pruned network.

    Returns a new, plain (unpruned) module of the same class whose ``Linear`` / ``Conv``
    layers are smaller. A channel is removed when every layer that produces it (several, across
    a residual addition) has an all-zero weight row / filter for it; the channel is removed from
    every layer coupled to it (BatchNorm, both sides of a residual addition, the input columns
    or channels of the next layers, through flatten), as found by Torch-Pruning's
    ``DependencyGraph``. Channels that reach the network's output (the classes) are kept.

    Such a channel is a constant (its bias, mapped through BatchNorm and activations). Units
    pruned by :func:`~fairprune_sk.pruning.prune_module` with a structured method are dead
    (weights, bias and BatchNorm channel masked) and that constant is zero. Otherwise the
    constant, measured on ``example_inputs``, is folded into the bias of the next layer, which
    is exact for a ``Linear`` and for a ``Conv`` without zero padding; a channel whose non-zero
    constant feeds a zero-padded ``Conv``, or that is not constant there, is kept. The outputs of
    the compact module therefore equal those of ``module`` in eval mode (up to float rounding),
    and in training mode as well when every removed channel is dead. The result is checked on
    ``example_inputs`` before it is returned.

    Parameters
    ----------
    module : torch.nn.Module
        Typically pruned with ``structured_l1`` / ``structured_l2``; not modified.
    example_inputs : torch.Tensor, optional
        A batch that ``module`` accepts, used to trace it. By default 2 random rows shaped as
        ``module.input_shape`` (the package's image models have one) or as the
        ``in_features`` of a first ``Linear`` layer.

    Returns
    -------
    torch.nn.Module
        The smaller, plain module (in the training mode of ``module``). Its
        :func:`~fairprune_sk.pruning.sparsity` counts the zeros left in its own, smaller
        layers: 0.0 when every pruned unit was removed (the masked ``module`` reports the
        zeros of the pruned units instead).

    Raises
    ------
    ValueError
        If ``example_inputs`` is needed but cannot be inferred; if ``module`` is quantized
        (compact first, then quantize).
    NotImplementedError
        If the forward cannot be traced, or a dead channel is coupled to a layer that compact
        cannot shrink exactly (a grouped convolution, LayerNorm, GroupNorm, Embedding, ...): the
        message names the layer.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import compact, prune_module
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> small = compact(prune_module(net, 0.5, "structured_l2"))
    >>> small[0].out_features, small[2].in_features
    (8, 8)
    """
    check_not_quantized(module, "compact", "compact")
    small = unpruned_copy(module)
    if not any(isinstance(sub, PRUNABLE_TYPES) for sub in small.modules()):
        return small
    inputs = example_batch(small, example_inputs)
    if inputs is None:
        raise ValueError(
            f"cannot compact {type(module).__name__}: pass example_inputs (a batch its forward "
            "accepts); they are only inferred from an `input_shape` attribute or a first "
            "Linear layer"
        )
    modes = [sub.training for sub in small.modules()]
    small.eval()
    try:
        expected, seen = _probe(small, inputs)
        graph = build_graph(small, inputs)
        names = {sub: name for name, sub in small.named_modules()}
        plans = [_plan(group, seen, names) for group in list(graph.get_all_groups())]
        plans = [plan for plan in plans if plan.remove]
        with torch.no_grad():
            for plan in plans:
                for layer, column, value in plan.folds:
                    _fold(layer, column, value)
        for plan in plans:
            graph.get_pruning_group(plan.root, plan.handler, plan.remove).prune()
        _check_outputs(small, inputs, expected)
    finally:
        for sub, mode in zip(small.modules(), modes, strict=True):
            sub.training = mode
    return small


@dataclass
class _Plan:
    """What to do with one group: the root channels to remove and the constants to fold."""

    root: nn.Module
    handler: object
    remove: list[int] = field(default_factory=list)
    folds: list[tuple[nn.Module, int, float]] = field(default_factory=list)


def _probe(module: nn.Module, inputs) -> tuple[torch.Tensor, dict[nn.Module, list]]:
    """The output on ``inputs`` and every input that each Linear/Conv layer received."""
    seen: dict[nn.Module, list[torch.Tensor]] = {}

    def record(sub, args):
        seen.setdefault(sub, []).append(args[0].detach())

    handles = [
        sub.register_forward_pre_hook(record)
        for sub in module.modules()
        if isinstance(sub, PRUNABLE_TYPES)
    ]
    try:
        with torch.no_grad():
            output = module(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return output, seen


def _plan(group, seen, names) -> _Plan:
    items = list(group)
    root = items[0].dep.target.module
    plan = _Plan(root, items[0].dep.handler)
    if any(item.dep.target.type == OPTYPE.OUTPUT for item in items):
        return plan  # these channels are outputs of the network
    candidates = set(range(len(items[0].idxs)))
    consumers = []
    for item in items:
        node, handler = item.dep.target, item.dep.handler
        if node.type in (OPTYPE.CONV, OPTYPE.LINEAR):
            if node.type == OPTYPE.CONV and node.module.groups != 1:
                continue  # refused below, if there is anything to remove
            if _is_out(group, handler):
                rows = node.module.weight.detach().flatten(1).bool().any(dim=1)
                candidates -= {r for i, r in zip(item.idxs, item.root_idxs, strict=True) if rows[i]}
            else:
                consumers.append(item)
    n_channels = len(items[0].idxs)
    if len(candidates) == n_channels:
        candidates.discard(0)  # keep one channel: no zero-sized layers
    if not candidates:
        return plan
    for item in items:
        node = item.dep.target
        grouped = node.type == OPTYPE.CONV and node.module.groups != 1
        if grouped or node.type not in _SUPPORTED and node.type != OPTYPE.OUTPUT:
            label = names.get(node.module, node.name)
            raise NotImplementedError(
                f"cannot compact: layer {label!r} ({type(node.module).__name__}"
                f"{f', groups={node.module.groups}' if grouped else ''}) is coupled to the "
                f"pruned channels of {names.get(root, '?')!r}; {_HELP}"
            )
    folds = []
    for item in consumers:
        layer = item.dep.target.module
        padded = isinstance(layer, nn.modules.conv._ConvNd) and _zero_padded(layer)
        for column, r in zip(item.idxs, item.root_idxs, strict=True):
            if r not in candidates:
                continue
            value = _constant(seen.get(layer, []), layer, column)
            if value is None or (value != 0 and padded):
                candidates.discard(r)
            elif value != 0:
                folds.append((layer, column, value, r))
    plan.remove = sorted(candidates)
    plan.folds = [(layer, column, value) for layer, column, value, r in folds if r in candidates]
    return plan


def _is_out(group, handler) -> bool:
    return group._DG.is_out_channel_pruning_fn(handler)


def _zero_padded(conv: nn.Module) -> bool:
    padding = conv.padding
    if padding == "valid" or conv.padding_mode != "zeros":
        return False
    return padding == "same" or any(p != 0 for p in padding)


def _constant(calls: list[torch.Tensor], layer: nn.Module, column: int) -> float | None:
    """The value of input ``column`` of ``layer`` if it was one constant in every call."""
    if not calls:
        return None
    values = torch.cat([(x[..., column] if isinstance(layer, nn.Linear) else x[:, column]).flatten()
                        for x in calls])  # fmt: skip
    first = values[0]
    return float(first) if bool((values == first).all()) else None


def _fold(layer: nn.Module, column: int, value: float) -> None:
    """Add the contribution of a constant input ``column`` to ``layer``'s bias."""
    weight = layer.weight[:, column]
    shift = (weight if weight.dim() == 1 else weight.flatten(1).sum(dim=1)) * value
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros_like(shift))
    layer.bias.add_(shift)


def _check_outputs(module: nn.Module, inputs, expected: torch.Tensor) -> None:
    with torch.no_grad():
        got = module(inputs)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    if got.shape != expected.shape or not torch.allclose(
        got, expected, rtol=1e-4, atol=1e-5 * max(1.0, scale)
    ):
        diff = (got - expected).abs().max() if got.shape == expected.shape else "shape"
        raise NotImplementedError(
            f"cannot compact {type(module).__name__}: removing its dead channels changed its "
            f"outputs on the example inputs (max abs difference {diff}); an operation between "
            f"the pruned layers mixes channels; {_HELP}"
        )
