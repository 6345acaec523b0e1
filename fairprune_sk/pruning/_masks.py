"""The masks that ``torch.nn.utils.prune`` installs: reading them, copying, making them permanent.

A pruned tensor ``weight`` is reparametrised as ``weight_orig`` + ``weight_mask`` and a forward
pre-hook (a ``prune.BasePruningMethod``) that recomputes ``weight`` before each forward pass.
A :class:`WeightTransform` hook registered after it (the k-bit grid of
:mod:`fairprune_sk.quantization`) recomputes ``weight`` once more, as a function of the masked
value. Everything here goes through :func:`pruning_hooks`, :func:`weight_transforms` and
:func:`effective`, so the hooks are found, and the value the forward pass uses computed, in one
place.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from .._validation import validate_params
from ._select import MODULE, prunable_tensors

__all__ = [
    "WeightTransform",
    "copy_module",
    "detach_pruned_weights",
    "effective_state_dict",
    "is_pruned",
    "layer_sparsity",
    "make_permanent",
    "sparsity",
    "unpruned_copy",
]


# ----------------------------------------------------------------------------- hooks
class WeightTransform:
    """A forward pre-hook that sets a pruned tensor to a function of its masked value.

    Registered on a submodule after the torch prune hook of ``tensor_name``, it sets
    ``module.<tensor_name>`` to ``transform(module, weight_orig * weight_mask)`` before each
    forward pass, so training updates ``weight_orig`` through it. Its state lives in buffers
    named ``<tensor_name><suffix>`` (``buffer_suffixes``), so it travels with the module's
    ``state_dict``. :func:`effective` applies it, :func:`make_permanent` writes its value into
    a plain weight, and the state dicts of plain names (:func:`effective_state_dict`) leave its
    buffers out. Subclasses define :meth:`transform`.

    Parameters
    ----------
    tensor_name : str
        The reparametrised tensor (``"weight"``).
    """

    #: Suffixes of the buffers that hold the transform's state (``("_bits",)``).
    buffer_suffixes: tuple[str, ...] = ()

    def __init__(self, tensor_name: str) -> None:
        self.tensor_name = tensor_name

    def transform(self, module: nn.Module, value: torch.Tensor) -> torch.Tensor:
        """The tensor the forward pass uses, from the masked ``value``."""
        raise NotImplementedError

    def __call__(self, module: nn.Module, inputs: tuple) -> tuple | None:
        name = self.tensor_name
        masked = getattr(module, name + "_mask") * getattr(module, name + "_orig")
        setattr(module, name, self.transform(module, masked))
        return None

    def remove(self, module: nn.Module) -> None:
        """Unregister this hook from ``module`` and delete its buffers (the masked value of
        ``module.<tensor_name>`` is then recomputed by the prune hook alone)."""
        for key, hook in list(module._forward_pre_hooks.items()):
            if hook is self:
                del module._forward_pre_hooks[key]
        for suffix in self.buffer_suffixes:
            delattr(module, self.tensor_name + suffix)
        with torch.no_grad():
            setattr(module, self.tensor_name, effective(module, self.tensor_name))


def weight_transforms(
    module: nn.Module,
) -> Iterator[tuple[str, nn.Module, str, WeightTransform]]:
    """``(qualified submodule name, submodule, tensor name, hook)`` of every weight transform."""
    for qualname, sub in module.named_modules():
        for hook in list(sub._forward_pre_hooks.values()):
            if isinstance(hook, WeightTransform):
                yield qualname, sub, hook.tensor_name, hook


def check_not_quantized(module: nn.Module, caller: str, action: str) -> None:
    """Raise a ``ValueError`` if ``module`` has weight transforms: ``caller`` cannot ``action``
    (e.g. ``"prune"``) weights on a quantization grid, which must come last."""
    quantized = sorted({qualname for qualname, *_ in weight_transforms(module)})
    if quantized:
        raise ValueError(
            f"{caller} cannot {action} a module whose weights are on a quantization grid "
            f"(layers {quantized[:3]}): {action} first, then quantize "
            "(fairprune_sk.quantization.dequantize removes the grid)"
        )


def transform_buffer_keys(module: nn.Module) -> set[str]:
    """The ``state_dict`` keys of the buffers of every :class:`WeightTransform`."""
    return {
        f"{qualname}.{name}{suffix}" if qualname else f"{name}{suffix}"
        for qualname, _, name, hook in weight_transforms(module)
        for suffix in hook.buffer_suffixes
    }


def pruning_hooks(
    module: nn.Module,
) -> Iterator[tuple[str, nn.Module, str, prune.BasePruningMethod]]:
    """``(qualified submodule name, submodule, tensor name, hook)`` of every pruned tensor."""
    for qualname, sub in module.named_modules():
        for hook in list(sub._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                yield qualname, sub, hook._tensor_name, hook


def effective(sub: nn.Module, name: str) -> torch.Tensor:
    """The value of ``sub.<name>`` that the forward pass uses: masked, then transformed by the
    :class:`WeightTransform` hooks of the tensor (recomputed, never the stale attribute)."""
    mask = getattr(sub, name + "_mask", None)
    orig = getattr(sub, name + "_orig", None)
    if mask is None or orig is None:
        return getattr(sub, name)
    value = mask.to(dtype=orig.dtype) * orig
    for hook in list(sub._forward_pre_hooks.values()):
        if isinstance(hook, WeightTransform) and hook.tensor_name == name:
            value = hook.transform(sub, value)
    return value


def mask_of(sub: nn.Module, name: str) -> torch.Tensor:
    """The mask of ``sub.<name>``; all ones for a tensor that is not pruned."""
    mask = getattr(sub, name + "_mask", None)
    return torch.ones_like(getattr(sub, name)) if mask is None else mask


# ----------------------------------------------------------------------------- inspection
@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def sparsity(module: nn.Module) -> float:
    """Fraction of zero entries over all prunable weights.

    Counts the zeros of the *effective* (masked) weights of every layer returned by
    :func:`prunable_tensors` (``keep_dense`` layers included).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    float
        In ``[0, 1]``; ``0.0`` for a module without prunable layers.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import prune_module, sparsity
    >>> net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    >>> round(sparsity(prune_module(net, 0.5)), 2)
    0.5
    """
    zeros = total = 0
    with torch.no_grad():
        for _, sub, name in prunable_tensors(module):
            weight = effective(sub, name)
            zeros += int((weight == 0).sum())
            total += weight.numel()
    return zeros / total if total else 0.0


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def layer_sparsity(module: nn.Module) -> dict[str, float]:
    """Fraction of zero entries of each prunable layer's effective weight.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    dict of str to float
        Keyed by qualified layer name, in module order.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import layer_sparsity, prune_module
    >>> net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    >>> layer_sparsity(prune_module(net, 0.5, "layer_magnitude"))
    {'0': 0.5, '2': 0.5}
    """
    out: dict[str, float] = {}
    with torch.no_grad():
        for layer, sub, name in prunable_tensors(module):
            weight = effective(sub, name)
            out[layer] = float((weight == 0).sum()) / weight.numel()
    return out


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def is_pruned(module: nn.Module) -> bool:
    """Whether any submodule carries a torch pruning reparametrisation (``*_orig``/``*_mask``).

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import is_pruned, prune_module
    >>> net = nn.Sequential(nn.Linear(4, 2))
    >>> is_pruned(net), is_pruned(prune_module(net, 0.5))
    (False, True)
    """
    return prune.is_pruned(module)


# ----------------------------------------------------------------------------- copies
@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def make_permanent(module: nn.Module) -> nn.Module:
    """Remove every pruning reparametrisation, keeping the masked values, in place.

    After this, pruned entries are plain zeros in ordinary parameters (``weight_orig`` and
    ``weight_mask`` are gone) and training may change them again. A tensor on a
    :class:`WeightTransform` (a quantization grid) keeps its transformed value: the grid's
    values become plain weights.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import is_pruned, make_permanent, prune_module, sparsity
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 4)), 0.5)
    >>> is_pruned(make_permanent(net)), round(sparsity(net), 2)
    (False, 0.5)
    """
    with torch.no_grad():
        for _, sub, name, hook in list(weight_transforms(module)):
            value = effective(sub, name)
            hook.remove(sub)
            getattr(sub, name + "_orig").copy_(value)
    for _, sub, name, _ in list(pruning_hooks(module)):
        prune.remove(sub, name)
    return module


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def detach_pruned_weights(module: nn.Module) -> nn.Module:
    """Replace each pruned tensor attribute by a detached ``orig * mask``, in place.

    After pruning (and after every forward pass) the pruned ``weight`` attribute is a non-leaf
    tensor of the autograd graph, which ``copy.deepcopy`` refuses ("Only Tensors created
    explicitly by the user support the deepcopy protocol"). The forward pre-hook recomputes
    the attribute from ``weight_orig`` and ``weight_mask`` at the next forward pass, so
    replacing it by a detached value changes nothing else.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import detach_pruned_weights, prune_module
    >>> import copy
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 2)), 0.5)
    >>> _ = copy.deepcopy(detach_pruned_weights(net))
    """
    with torch.no_grad():
        for _, sub, name, _ in pruning_hooks(module):
            setattr(sub, name, effective(sub, name))
    return module


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def copy_module(module: nn.Module) -> nn.Module:
    """Deep copy that also works on pruned modules, keeping their masks.

    ``module`` is not modified: the non-leaf pruned attributes are copied as detached values
    (they are recomputed by the forward pre-hook anyway).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        An independent copy, pruned like ``module``.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import copy_module, is_pruned, prune_module
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 2)), 0.5)
    >>> is_pruned(copy_module(net))
    True
    """
    memo: dict[int, object] = {}
    with torch.no_grad():
        for _, sub, name, _ in pruning_hooks(module):
            value = sub.__dict__.get(name)
            if isinstance(value, torch.Tensor):
                memo[id(value)] = effective(sub, name).detach().clone()
    return copy.deepcopy(module, memo)


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def effective_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with plain names and the effective (masked) values.

    ``"0.weight_orig"`` and ``"0.weight_mask"`` become ``"0.weight"`` holding
    ``weight_orig * weight_mask`` (on a quantization grid, the grid's value; the grid's
    buffers are left out). Every value is cloned, detached and on CPU, so the result
    is a snapshot that loads into an unpruned instance of the same architecture.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    dict of str to torch.Tensor

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import effective_state_dict, prune_module
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 2)), 0.5)
    >>> sorted(effective_state_dict(net))
    ['0.bias', '0.weight']
    >>> _ = nn.Sequential(nn.Linear(4, 2)).load_state_dict(effective_state_dict(net))
    """
    renamed: dict[str, tuple[str, nn.Module, str]] = {}
    dropped: set[str] = transform_buffer_keys(module)
    for qualname, sub, name, _ in pruning_hooks(module):
        prefix = f"{qualname}." if qualname else ""
        renamed[f"{prefix}{name}_orig"] = (f"{prefix}{name}", sub, name)
        dropped.add(f"{prefix}{name}_mask")
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if key in dropped:
                continue
            if key in renamed:
                key, sub, name = renamed[key]
                value = effective(sub, name)
            out[key] = value.detach().to("cpu", copy=True)
    return out


@validate_params(
    {"module": MODULE, "state_dict": [Mapping, None]}, prefer_skip_nested_validation=True
)
def unpruned_copy(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """A plain copy of ``module`` without pruning hooks or masks.

    Parameters
    ----------
    module : torch.nn.Module
        Pruned or not; not modified.
    state_dict : mapping of str to torch.Tensor, optional
        Loaded (strictly) into the copy, e.g. the dense reference weights kept before
        pruning. Without it the copy holds the effective (masked) weights.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.pruning import is_pruned, prune_module, unpruned_copy
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 2)), 0.5)
    >>> plain = unpruned_copy(net)
    >>> is_pruned(plain), is_pruned(net)
    (False, True)
    """
    plain = make_permanent(copy_module(module))
    if state_dict is not None:
        plain.load_state_dict(state_dict)
    return plain
