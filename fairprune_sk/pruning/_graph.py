"""The dependency graph of a network, from Torch-Pruning's ``DependencyGraph`` (DepGraph).

Torch-Pruning traces ``forward`` through autograd on an example batch and groups every layer
whose channels are coupled to another's (a convolution and its BatchNorm, both sides of a
residual addition, the input columns of the next layer, a flatten in between). This module
builds that graph for :func:`~fairprune_sk.pruning.compact` and for structured pruning, which
masks the BatchNorm channel that follows a pruned unit.
"""

from __future__ import annotations

import numbers

import torch
import torch_pruning as tp
from torch import nn

from .._validation import torch_generator
from ._masks import unpruned_copy
from ._select import PRUNABLE_TYPES

OPTYPE = tp.ops.OPTYPE

__all__ = ["build_graph", "example_batch", "norms_after"]


def example_batch(module: nn.Module, example_inputs=None) -> torch.Tensor | None:
    """``example_inputs``, or a batch of 2 random rows inferred from ``module``; else None.

    The shape is inferred from an ``input_shape`` attribute (the package's image models carry
    one) or from the ``in_features`` of a first ``Linear`` layer. The draws come from their own
    seeded generator, so torch's global RNG is untouched.
    """
    if example_inputs is not None:
        return example_inputs
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else None
    shape = getattr(module, "input_shape", None)
    if not (
        isinstance(shape, tuple | list)
        and shape
        and all(isinstance(s, numbers.Integral) and s > 0 for s in shape)
    ):
        first = next((sub for sub in module.modules() if isinstance(sub, PRUNABLE_TYPES)), None)
        if not isinstance(first, nn.Linear):
            return None
        shape = (first.in_features,)
    return torch.randn((2, *shape), generator=torch_generator(0), dtype=dtype).to(device)


def build_graph(module: nn.Module, example_inputs) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of ``module``, traced in eval mode on ``example_inputs``.

    The train/eval mode of every submodule is restored. Raises ``NotImplementedError`` naming
    the module when the forward cannot be traced.
    """
    modes = [sub.training for sub in module.modules()]
    module.eval()
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(
                module, example_inputs=example_inputs, verbose=False
            )
    except Exception as exc:
        shape = tuple(getattr(example_inputs, "shape", ()))
        raise NotImplementedError(
            f"Torch-Pruning's DependencyGraph could not trace {type(module).__name__}.forward "
            f"on example inputs of shape {shape}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for sub, mode in zip(module.modules(), modes, strict=True):
            sub.training = mode


def norms_after(module: nn.Module, example_inputs) -> dict[str, list[nn.Module]]:
    """The ``BatchNorm`` layers that each Linear/Conv layer feeds directly.

    "Directly" means through single-input element-wise operations only (activations, pooling),
    never through an addition, a concatenation or a reshape. Keyed by qualified layer name; the
    BatchNorm modules are those of ``module`` itself. ``{}`` when the graph cannot be built.
    """
    if example_inputs is None:
        return {}
    plain = unpruned_copy(module)  # traced without the pruning hooks
    try:
        graph = build_graph(plain, example_inputs)
    except NotImplementedError:
        return {}
    names = {sub: name for name, sub in plain.named_modules()}
    originals = dict(module.named_modules())
    out: dict[str, list[nn.Module]] = {}
    for sub, node in graph.module2node.items():
        if not isinstance(sub, PRUNABLE_TYPES) or sub not in names:
            continue
        found, stack, seen = [], list(node.outputs), set()
        while stack:
            nxt = stack.pop()
            if id(nxt) in seen:
                continue
            seen.add(id(nxt))
            if nxt.type == OPTYPE.BN and nxt.module in names:
                found.append(originals[names[nxt.module]])
            elif nxt.type == OPTYPE.ELEMENTWISE and len(nxt.inputs) == 1:
                stack.extend(nxt.outputs)
        out[names[sub]] = found
    return out
