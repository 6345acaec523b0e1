"""Putting layers on a k-bit grid: the forward pre-hook, and installing, reading, removing it.

A quantized layer keeps torch prune's reparametrisation (``weight_orig`` + ``weight_mask``;
``prune.identity`` gives one to a layer that was not pruned) and gets a
:class:`WeightQuantizer` hook after the prune hook, so the forward pass uses
``q(weight_orig * weight_mask)``: pruned weights stay zero and the grid is recomputed from the
float ``weight_orig`` before every forward pass. Training updates ``weight_orig`` through the
straight-through estimator, so the weights the net uses stay on the grid through fine-tuning.
The grid's widths live in a buffer ``weight_bits`` (weight bits, input bits or 0), which travels
with the module's ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from .._validation import Interval, InvalidParameterError, validate_params
from ..pruning._masks import WeightTransform, effective, weight_transforms
from ..pruning._select import KEEP_DENSE, MODULE, prunable_tensors
from ._grid import BITS, straight_through

__all__ = [
    "BITS_SUFFIX",
    "WeightQuantizer",
    "dequantize",
    "install_quantizer",
    "is_quantized",
    "quantization_error",
    "quantize_module",
    "quantized_bits",
]

#: The buffer of a quantized tensor ``w`` is ``w`` + this: ``[weight bits, input bits or 0]``.
BITS_SUFFIX = "_bits"

#: sklearn constraint of ``activations``: a flag, or the input bits.
ACTIVATIONS: list[Any] = [
    "boolean", Interval(Integral, BITS[0].left, BITS[0].right, closed="both")
]


class WeightQuantizer(WeightTransform):
    """The forward pre-hook of a quantized layer: its weight (and input) on the k-bit grid.

    Sets ``module.<tensor_name>`` to the straight-through value of
    ``fake_quantize(weight_orig * weight_mask, bits)`` (one scale per output channel) and, when
    the layer's input bits are not 0, replaces the layer's first input by its straight-through
    value on the input grid (one scale per sample, so a row's output never depends on the
    rows batched with it). The bits are read from the buffer ``<tensor_name>_bits``.
    """

    buffer_suffixes = (BITS_SUFFIX,)

    def bits(self, module: nn.Module) -> tuple[int, int]:
        """``(weight bits, input bits)``; input bits 0 when inputs stay in float."""
        weight_bits, input_bits = getattr(module, self.tensor_name + BITS_SUFFIX).tolist()
        return int(weight_bits), int(input_bits)

    def transform(self, module: nn.Module, value: torch.Tensor) -> torch.Tensor:
        return straight_through(value, self.bits(module)[0])

    def __call__(self, module: nn.Module, inputs: tuple) -> tuple | None:
        super().__call__(module, inputs)
        input_bits = self.bits(module)[1]
        if not input_bits or not inputs:
            return None
        return (straight_through(inputs[0], input_bits), *inputs[1:])


def _quantizer_of(sub: nn.Module, name: str) -> WeightQuantizer | None:
    for hook in sub._forward_pre_hooks.values():
        if isinstance(hook, WeightQuantizer) and hook.tensor_name == name:
            return hook
    return None


def install_quantizer(sub: nn.Module, name: str, bits: int, input_bits: int) -> None:
    """Put ``sub.<name>`` on the ``bits``-bit grid (replacing a grid it has), in place."""
    old = _quantizer_of(sub, name)
    if old is not None:
        old.remove(sub)
    if not hasattr(sub, name + "_orig"):  # no torch prune reparametrisation yet
        prune.identity(sub, name)
    orig = getattr(sub, name + "_orig")
    sub.register_buffer(
        name + BITS_SUFFIX, torch.tensor([bits, input_bits], dtype=torch.int64, device=orig.device)
    )
    sub.register_forward_pre_hook(WeightQuantizer(name))
    with torch.no_grad():
        setattr(sub, name, effective(sub, name))


def _input_bits(bits: int, activations: bool | int) -> int:
    if activations is True:
        return int(bits)
    return int(activations) if activations else 0


@validate_params(
    {"module": MODULE, "bits": BITS, "activations": ACTIVATIONS, "keep_float": KEEP_DENSE},
    prefer_skip_nested_validation=True,
)
def quantize_module(
    module: nn.Module,
    bits: int,
    *,
    activations: bool | int = False,
    keep_float: Iterable[str] | str = (),
) -> nn.Module:
    """Put the weights of ``module`` on a symmetric ``bits``-bit grid per output channel, in place.

    Every ``nn.Linear`` / ``nn.Conv1d/2d/3d`` weight (those :func:`fairprune_sk.pruning.sparsity`
    counts) not in ``keep_float`` is used through :func:`fake_quantize`: levels
    ``-L .. L`` (``L = 2**(bits - 1) - 1``) times ``max|w| / L`` of its output channel, so at
    most ``2**bits - 1`` distinct values per channel and zeros (pruned weights) stay zero.
    Simulated quantization: the module still computes in float, on grid values. The float
    weights are kept as torch prune's ``weight_orig`` (a layer that was not pruned gets
    ``prune.identity``'s all-ones mask), so fine-tuning is quantization-aware (the
    straight-through estimator updates ``weight_orig``) and the weights stay on the grid.
    Biases stay in float. Quantize after pruning: :func:`~fairprune_sk.pruning.prune_module`
    refuses a quantized module.

    Parameters
    ----------
    module : torch.nn.Module
        Modified in place; pruned (torch prune masks) or not.
    bits : int in [2, 8]
        Width of the weight grid.
    activations : bool or int in [2, 8], default=False
        Also quantize the input of each quantized layer: True with ``bits`` bits, an int with
        that many. Symmetric, one scale per sample (``max|x| / L`` of the row's input to the
        layer, recomputed on every forward pass, as dynamic quantization does), so a row's
        prediction does not depend on the rows batched with it.
    keep_float : iterable of str or str, default=()
        Layers to leave in float: qualified names and/or ``"first"`` / ``"last"`` (as
        ``keep_dense`` of :func:`~fairprune_sk.pruning.prunable_tensors`).

    Returns
    -------
    torch.nn.Module
        ``module`` itself. Quantizing it again replaces the grid of the selected layers.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from fairprune_sk.quantization import quantize_module, quantized_bits
    >>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> quantized_bits(quantize_module(net, 3))
    {'0': 3, '2': 3}
    >>> len(torch.unique(net[0].weight[0])) <= 2**3
    True
    """
    try:
        targets = prunable_tensors(module, keep_dense=keep_float)
    except InvalidParameterError as error:
        raise InvalidParameterError(
            str(error).replace("'keep_dense' parameter of prunable_tensors",
                               "'keep_float' parameter of quantize_module")
        ) from None
    input_bits = _input_bits(bits, activations)
    for _, sub, name in targets:
        install_quantizer(sub, name, int(bits), input_bits)
    return module


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def is_quantized(module: nn.Module) -> bool:
    """Whether any layer of ``module`` is on a grid of :func:`quantize_module`.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.quantization import is_quantized, quantize_module
    >>> net = nn.Sequential(nn.Linear(4, 2))
    >>> is_quantized(net), is_quantized(quantize_module(net, 4))
    (False, True)
    """
    return any(isinstance(hook, WeightQuantizer) for *_, hook in weight_transforms(module))


@validate_params({"module": MODULE, "inputs": ["boolean"]}, prefer_skip_nested_validation=True)
def quantized_bits(module: nn.Module, *, inputs: bool = False) -> dict[str, int]:
    """The grid width of each quantized layer.

    Parameters
    ----------
    module : torch.nn.Module
    inputs : bool, default=False
        The bits of the layers' inputs instead of their weights (0: the input stays in float).

    Returns
    -------
    dict of str to int
        Keyed by qualified layer name, in module order; empty for a module not quantized.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.quantization import quantize_module, quantized_bits
    >>> net = quantize_module(nn.Sequential(nn.Linear(4, 2)), 4, activations=8)
    >>> quantized_bits(net), quantized_bits(net, inputs=True)
    ({'0': 4}, {'0': 8})
    """
    return {
        qualname: hook.bits(sub)[1 if inputs else 0]
        for qualname, sub, _, hook in weight_transforms(module)
        if isinstance(hook, WeightQuantizer)
    }


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def quantization_error(module: nn.Module) -> float:
    """‖q(w) − w‖: the Euclidean distance the grid moves the quantized weights.

    ``w`` is each quantized layer's float masked weight (``weight_orig * weight_mask``) and
    ``q(w)`` its grid value, over all quantized layers together. For a net quantized right
    after training (or pruning) this is the distance ‖θ̂ − θ*‖ of Theorem 1's bound between
    the quantized weights and the float ones (plus pruning's share, measured against the
    dense θ*, when the net was pruned first).

    Returns
    -------
    float
        0.0 for a module not quantized.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from fairprune_sk.quantization import quantization_error, quantize_module
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(16, 16))
    >>> quantization_error(quantize_module(net, 8)) < quantization_error(quantize_module(net, 2))
    True
    """
    total = 0.0
    with torch.no_grad():
        for _, sub, name, hook in weight_transforms(module):
            if isinstance(hook, WeightQuantizer):
                masked = getattr(sub, name + "_mask") * getattr(sub, name + "_orig")
                total += float(((hook.transform(sub, masked) - masked) ** 2).sum())
    return total**0.5


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def dequantize(module: nn.Module) -> nn.Module:
    """Take every layer of ``module`` off its grid, in place: the float weights come back.

    The grid hooks and their ``weight_bits`` buffers are removed; torch prune's
    reparametrisation stays (a layer that was not pruned keeps ``prune.identity``'s all-ones
    mask; :func:`fairprune_sk.pruning.make_permanent` removes it, and writes the grid values
    into plain weights if called before this).

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> from torch import nn
    >>> from fairprune_sk.quantization import dequantize, is_quantized, quantize_module
    >>> is_quantized(dequantize(quantize_module(nn.Sequential(nn.Linear(4, 2)), 4)))
    False
    """
    for _, sub, _, hook in list(weight_transforms(module)):
        if isinstance(hook, WeightQuantizer):
            hook.remove(sub)
    return module
