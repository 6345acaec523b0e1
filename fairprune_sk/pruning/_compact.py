"""Physically removing the dead units of a structurally pruned network."""

from __future__ import annotations

import torch
from torch import nn

from ._chain import _Op, chain
from ._masks import unpruned_copy
from ._select import check_module

__all__ = ["compact"]


def compact(module: nn.Module) -> nn.Module:
    """Physically remove dead units of a structurally pruned network.

    Returns a new, plain (unpruned) module of the same class whose ``Linear`` / ``Conv``
    layers are smaller: every output unit (row / filter) whose effective weights are all zero
    is removed, together with its ``BatchNorm`` channel and the matching input columns /
    channels of the next layer (with a ``Flatten`` in between, the whole ``H*W`` block of the
    next ``Linear``'s inputs). The outputs of the last layer (the classes) are kept.

    A removed unit outputs a constant (its bias, mapped through the BatchNorm and activation
    that follow it). Units pruned by :func:`prune_module` with a structured method are dead
    (weights, bias and BatchNorm channel masked) and that constant is zero. Otherwise the
    constant is folded into the next layer's bias, which is exact for a ``Linear`` and for a
    ``Conv`` without zero padding; a unit whose non-zero constant feeds a zero-padded ``Conv``
    is kept. The outputs of the compact module therefore equal those of ``module`` in eval
    mode (up to float rounding); in training mode as well when every removed unit is dead.

    Parameters
    ----------
    module : torch.nn.Module
        Typically pruned with ``structured_l1`` / ``structured_l2``; not modified. Supported:
        chains ``Linear/Conv -> [BatchNorm, element-wise activation, dropout, pooling,
        flatten]* -> Linear/Conv``, found by tracing ``forward`` with ``torch.fx``, or, when
        it cannot be traced, in an ``nn.Sequential`` or in the ``layers`` (or ``features`` then
        ``classifier``) ``nn.Sequential`` attributes, assumed to make up ``forward``.

    Returns
    -------
    torch.nn.Module
        The smaller, plain module (in the training mode of ``module``).

    Raises
    ------
    NotImplementedError
        For an architecture that is not such a chain (residual blocks, branches, grouped
        convolutions, layers used twice, reshapes that hard-code a size, ...); the message
        names the layer or operation and why.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import compact, prune_module
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> small = compact(prune_module(net, 0.5, "structured_l2"))
    >>> small[0].out_features, small[2].in_features
    (8, 8)
    """
    check_module(module)
    small = unpruned_copy(module)
    ops = chain(small)
    positions = [i for i, op in enumerate(ops) if op.kind == "layer"]
    with torch.no_grad():
        for start, stop in zip(positions, positions[1:], strict=False):
            _compact_segment(ops[start], ops[start + 1 : stop], ops[stop])
    return small


def _compact_segment(first: _Op, between: list[_Op], second: _Op) -> None:
    """Remove the dead output units of ``first`` and the matching inputs of ``second``."""
    a, b = first.module, second.module
    a_conv = not isinstance(a, nn.Linear)
    units = a.weight.shape[0]
    dead = ~a.weight.flatten(1).bool().any(dim=1)
    if not bool(dead.any()):
        return

    # constant output of each unit with zero weights, mapped through the ops in between
    const = a.bias.detach().clone() if a.bias is not None else a.weight.new_zeros(units)
    zero_only = False  # True once a pooling only keeps a zero channel constant
    flattened = False
    for op in between:
        if op.kind == "norm":
            if op.module.num_features != units:
                raise NotImplementedError(
                    f"cannot compact: {op.label!r} has {op.module.num_features} features but "
                    f"layer {first.label!r} outputs {units}"
                )
            const = _norm_constant(op.module, const)
        elif op.kind == "pointwise":
            const = op.fn(const)
        elif op.kind == "pool":
            if not a_conv or flattened:
                raise NotImplementedError(
                    f"cannot compact: pooling {op.label!r} after a Linear layer or a flatten "
                    "is not supported"
                )
            zero_only = zero_only or op.zero_only
        elif op.kind == "flatten":
            flattened = True

    span = _input_span(first, second, units, flattened)
    nonzero = const != 0
    if isinstance(b, nn.Linear):
        foldable = not zero_only
    else:
        padding = b.padding
        unpadded = padding == "valid" or (
            not isinstance(padding, str) and all(p == 0 for p in padding)
        )
        foldable = not zero_only and (unpadded or b.padding_mode != "zeros")
    removable = dead & (~nonzero | foldable)
    if bool(removable.all()):
        removable[0] = False  # keep one unit: no zero-sized layers
    if not bool(removable.any()):
        return
    keep = ~removable

    fold = removable & nonzero
    if bool(fold.any()):
        if isinstance(b, nn.Linear):
            block = b.weight.view(b.out_features, units, span)[:, fold, :].sum(dim=2)
        else:
            block = b.weight[:, fold].flatten(2).sum(dim=2)
        shift = block @ const[fold].to(block.dtype)
        if b.bias is None:
            b.bias = nn.Parameter(torch.zeros_like(shift))
        b.bias.add_(shift)

    _keep_outputs(a, keep)
    for op in between:
        if op.kind == "norm":
            _keep_norm_channels(op.module, keep)
    _keep_inputs(b, keep, span)


def _norm_constant(bn: nn.Module, const: torch.Tensor) -> torch.Tensor:
    """BatchNorm (eval mode) of a channel that is constant ``const``."""
    if bn.track_running_stats and bn.running_mean is not None:
        out = (const - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    else:  # batch statistics of a constant channel: mean = const, var = 0
        out = torch.zeros_like(const)
    if bn.affine:
        out = out * bn.weight + bn.bias
    return out


def _input_span(first: _Op, second: _Op, units: int, flattened: bool) -> int:
    """How many inputs of ``second`` each output unit of ``first`` feeds."""
    a, b = first.module, second.module
    a_conv = not isinstance(a, nn.Linear)
    if isinstance(b, nn.Linear):
        if a_conv and not flattened:
            raise NotImplementedError(
                f"cannot compact: Linear {second.label!r} is applied to the output of "
                f"convolution {first.label!r} without flattening it"
            )
        if a_conv and b.in_features % units == 0:
            return b.in_features // units
        if not a_conv and b.in_features == units:
            return 1
        raise NotImplementedError(
            f"cannot compact: layer {second.label!r} has {b.in_features} input features, "
            f"which do not match the {units} outputs of {first.label!r}"
        )
    if not a_conv or flattened:
        raise NotImplementedError(
            f"cannot compact: convolution {second.label!r} after "
            f"{'a flatten' if flattened else 'Linear ' + repr(first.label)} is not supported"
        )
    if b.in_channels != units:
        raise NotImplementedError(
            f"cannot compact: convolution {second.label!r} has {b.in_channels} input channels "
            f"but {first.label!r} outputs {units}"
        )
    return 1


def _replace(sub: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(sub, name)
    if isinstance(old, nn.Parameter):
        setattr(sub, name, nn.Parameter(value.clone(), requires_grad=old.requires_grad))
    else:
        setattr(sub, name, value.clone())


def _keep_outputs(layer: nn.Module, keep: torch.Tensor) -> None:
    _replace(layer, "weight", layer.weight[keep])
    if layer.bias is not None:
        _replace(layer, "bias", layer.bias[keep])
    if isinstance(layer, nn.Linear):
        layer.out_features = int(keep.sum())
    else:
        layer.out_channels = int(keep.sum())


def _keep_inputs(layer: nn.Module, keep: torch.Tensor, span: int) -> None:
    if isinstance(layer, nn.Linear):
        columns = keep.repeat_interleave(span)
        _replace(layer, "weight", layer.weight[:, columns])
        layer.in_features = int(columns.sum())
    else:
        _replace(layer, "weight", layer.weight[:, keep])
        layer.in_channels = int(keep.sum())


def _keep_norm_channels(bn: nn.Module, keep: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        if getattr(bn, name, None) is not None:
            _replace(bn, name, getattr(bn, name)[keep])
    bn.num_features = int(keep.sum())
