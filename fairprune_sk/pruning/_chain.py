"""The network read as a chain of operations between its first and last Linear/Conv layer.

Used by :func:`~fairprune_sk.pruning.compact` and to find the ``BatchNorm`` channels of a unit
removed by structured pruning.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._select import PRUNABLE_TYPES as _PRUNABLE_TYPES

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_POINTWISE_TYPES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid,
)  # fmt: skip
_IDENTITY_TYPES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)  # fmt: skip
_MAX_POOL_TYPES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)  # fmt: skip
_AVG_POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_POINTWISE_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, F.hardtanh, F.hardswish, F.hardsigmoid,
    F.softplus, F.softsign, F.logsigmoid,
}  # fmt: skip
_IDENTITY_FUNCTIONS = {
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
}  # fmt: skip
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    F.adaptive_max_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}  # fmt: skip
_POINTWISE_METHODS = {"relu", "sigmoid", "tanh"}
_IDENTITY_METHODS = {"contiguous", "float", "clone"}

_CHAIN_HELP = (
    "compact supports chains Linear/Conv -> [BatchNorm, element-wise activation, dropout, "
    "pooling, flatten]* -> Linear/Conv"
)


@dataclass
class _Op:
    """One step of a chain.

    kind is "layer", "norm", "pointwise" (constant map ``fn``), "identity", "pool" (keeps a
    constant channel constant unless ``zero_only``) or "flatten".
    """

    kind: str
    label: str
    module: nn.Module | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    zero_only: bool = False


def _module_op(label: str, sub: nn.Module) -> _Op:
    if isinstance(sub, _PRUNABLE_TYPES):
        if getattr(sub, "groups", 1) != 1:
            raise NotImplementedError(
                f"cannot compact layer {label!r}: grouped/depthwise convolutions "
                f"(groups={sub.groups}) are not supported"
            )
        return _Op("layer", label, sub)
    if isinstance(sub, _NORM_TYPES):
        return _Op("norm", label, sub)
    if isinstance(sub, _POINTWISE_TYPES) or (isinstance(sub, nn.PReLU) and sub.num_parameters == 1):
        return _Op("pointwise", label, sub, fn=sub)
    if isinstance(sub, _IDENTITY_TYPES):
        return _Op("identity", label, sub)
    if isinstance(sub, _MAX_POOL_TYPES):
        return _Op("pool", label, sub)
    if isinstance(sub, _AVG_POOL_TYPES):
        padded = any(p != 0 for p in np.atleast_1d(sub.padding)) and sub.count_include_pad
        zero_only = padded or sub.ceil_mode or getattr(sub, "divisor_override", None) is not None
        return _Op("pool", label, sub, zero_only=bool(zero_only))
    if isinstance(sub, nn.Flatten):
        if sub.start_dim != 1 or sub.end_dim != -1:
            raise NotImplementedError(
                f"cannot compact through {label!r}: only Flatten(start_dim=1, end_dim=-1) is "
                f"supported, got start_dim={sub.start_dim}, end_dim={sub.end_dim}"
            )
        return _Op("flatten", label, sub)
    raise NotImplementedError(
        f"cannot compact through {label!r} ({type(sub).__name__}) between two pruned layers; "
        f"{_CHAIN_HELP}"
    )


def _is_shape_query(node: torch.fx.Node) -> bool:
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",):
        return True
    return (
        node.op == "call_function"
        and node.target is operator.getitem
        and isinstance(node.args[0], torch.fx.Node)
        and _is_shape_query(node.args[0])
    )


def _consumers(node: torch.fx.Node) -> list[torch.fx.Node]:
    return [user for user in node.users if not _is_shape_query(user)]


def _node_op(node: torch.fx.Node, root: nn.Module) -> _Op:
    label = node.name
    if node.op == "call_module":
        return _module_op(str(node.target), root.get_submodule(str(node.target)))
    others = [a for a in (*node.args[1:], *node.kwargs.values()) if isinstance(a, torch.fx.Node)]
    if node.op == "call_function":
        target = node.target
        if target in _POINTWISE_FUNCTIONS and not others:
            args, kwargs = node.args[1:], dict(node.kwargs)
            return _Op("pointwise", label, fn=lambda c: target(c, *args, **kwargs))
        if target in _IDENTITY_FUNCTIONS:
            return _Op("identity", label)
        if target in _POOL_FUNCTIONS:
            return _Op("pool", label)
        if target is torch.flatten:
            _check_flatten(node)
            return _Op("flatten", label)
    elif node.op == "call_method":
        if node.target in _POINTWISE_METHODS and not others:
            fn = getattr(torch, str(node.target))
            return _Op("pointwise", label, fn=fn)
        if node.target in _IDENTITY_METHODS and not others:
            return _Op("identity", label)
        if node.target == "flatten":
            _check_flatten(node)
            return _Op("flatten", label)
        if node.target in ("view", "reshape"):
            _check_view(node)
            return _Op("flatten", label)
    raise NotImplementedError(
        f"cannot compact through {node.op} {getattr(node.target, '__name__', node.target)!r} "
        f"(node {label!r}) between two pruned layers; {_CHAIN_HELP}"
    )


def _check_flatten(node: torch.fx.Node) -> None:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    if start != 1 or end != -1:
        raise NotImplementedError(
            f"cannot compact through flatten node {node.name!r}: only flatten(x, 1) is "
            f"supported, got start_dim={start!r}, end_dim={end!r}"
        )


def _check_view(node: torch.fx.Node) -> None:
    shape = node.args[1:]
    if len(shape) == 1 and isinstance(shape[0], tuple | list):
        shape = tuple(shape[0])
    ok = (
        len(shape) == 2
        and shape[1] == -1
        and isinstance(shape[0], torch.fx.Node)
        and _is_shape_query(shape[0])
    )
    if not ok:
        raise NotImplementedError(
            f"cannot compact through {node.target} node {node.name!r} with shape {shape!r}: "
            "only x.view(x.size(0), -1) / torch.flatten(x, 1) are supported (a hard-coded "
            "feature count would be wrong once channels are removed)"
        )


def _fx_chain(module: nn.Module, graph: torch.fx.Graph) -> list[_Op]:
    layer_nodes = [
        node
        for node in graph.nodes
        if node.op == "call_module"
        and isinstance(module.get_submodule(str(node.target)), _PRUNABLE_TYPES)
    ]
    if not layer_nodes:
        return []
    targets = [node.target for node in layer_nodes]
    shared = sorted({str(t) for t in targets if targets.count(t) > 1})
    if shared:
        raise NotImplementedError(f"cannot compact: layer(s) {shared} are called more than once")
    ops = [_node_op(layer_nodes[0], module)]
    node = layer_nodes[0]
    while node is not layer_nodes[-1]:
        consumers = _consumers(node)
        if len(consumers) != 1:
            raise NotImplementedError(
                f"cannot compact: the output of node {node.name!r} is used by "
                f"{len(consumers)} operations {[c.name for c in consumers]}; residual/skip "
                f"connections and branches are not supported ({_CHAIN_HELP})"
            )
        node = consumers[0]
        if node.op == "output":
            break
        ops.append(_node_op(node, module))
    on_chain = {id(op.module) for op in ops}
    missing = [
        str(n.target)
        for n in layer_nodes
        if id(module.get_submodule(str(n.target))) not in on_chain
    ]
    if missing:
        raise NotImplementedError(
            f"cannot compact: layer(s) {missing} are not on the chain from the first to the last "
            f"layer (branches or residual connections are not supported; {_CHAIN_HELP})"
        )
    return ops


def _sequential_leaves(seq: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    leaves = []
    for name, child in seq.named_children():
        if isinstance(child, nn.Sequential):
            leaves += _sequential_leaves(child, f"{prefix}{name}.")
        else:
            leaves.append((f"{prefix}{name}", child))
    return leaves


def _sequential_chain(module: nn.Module, reason: str) -> list[_Op]:
    """Chain of a module whose forward cannot be traced, read from its Sequentials.

    Assumes ``forward(x) = layers(x)`` or ``classifier(features(x))`` (with an optional flatten
    in between).
    """
    if isinstance(module, nn.Sequential):
        leaves = _sequential_leaves(module, "")
    elif isinstance(getattr(module, "layers", None), nn.Sequential):
        leaves = _sequential_leaves(module.layers, "layers.")
    elif isinstance(getattr(module, "features", None), nn.Sequential) and isinstance(
        getattr(module, "classifier", None), nn.Sequential
    ):
        leaves = [
            *_sequential_leaves(module.features, "features."),
            ("<flatten between features and classifier>", nn.Flatten()),
            *_sequential_leaves(module.classifier, "classifier."),
        ]
    else:
        raise NotImplementedError(
            f"cannot compact {type(module).__name__}: its forward could not be traced with "
            f"torch.fx ({reason}) and it is neither an nn.Sequential nor exposes its chain as "
            "`layers` or `features` + `classifier` nn.Sequential attributes"
        )
    chain = {id(sub) for _, sub in leaves}
    outside = [
        name
        for name, sub in module.named_modules()
        if isinstance(sub, _PRUNABLE_TYPES) and id(sub) not in chain
    ]
    if outside:
        raise NotImplementedError(
            f"cannot compact {type(module).__name__}: layer(s) {outside} are outside its "
            "Sequential chain and its forward could not be traced with torch.fx "
            f"({reason})"
        )
    positions = [i for i, (_, sub) in enumerate(leaves) if isinstance(sub, _PRUNABLE_TYPES)]
    if not positions:
        return []
    return [_module_op(name, sub) for name, sub in leaves[positions[0] : positions[-1] + 1]]


def chain(module: nn.Module) -> list[_Op]:
    """The ops from the first to the last Linear/Conv layer; NotImplementedError if no chain."""
    if isinstance(module, _PRUNABLE_TYPES):
        return [_module_op("", module)]
    try:
        graph = torch.fx.Tracer().trace(module)
    except Exception as exc:  # any tracing failure: read the chain from the Sequentials
        return _sequential_chain(module, f"{type(exc).__name__}: {exc}".splitlines()[0])
    return _fx_chain(module, graph)


def norms_after(module: nn.Module) -> dict[str, list[nn.Module]]:
    """BatchNorm layers fed by each layer's output (through pointwise ops / pooling only)."""
    try:
        ops = chain(module)
    except NotImplementedError:
        return {}
    names = {id(sub): name for name, sub in module.named_modules()}
    out: dict[str, list[nn.Module]] = {}
    current = None
    for op in ops:
        if op.kind == "layer":
            current = out.setdefault(names[id(op.module)], [])
        elif op.kind == "norm" and current is not None:
            current.append(op.module)
        elif op.kind not in ("pointwise", "identity", "pool"):
            current = None
    return out
