"""Export to int8 kernels: ``torch.ao.quantization``'s dynamic quantization, on our grid.

The exported module runs its ``nn.Linear`` layers with int8 weights and dynamically quantized
activations (torch's ``DynamicQuantizedLinear``), for faster inference on CPU. A layer on a
k-bit grid is exported exactly: every value ``j * s`` of the grid (``|j| <= L``, ``s`` its
channel's scale) is the int8 value ``j * m`` at the int8 scale ``s / m``, with
``m = 127 // L`` (1 for 8 bits), so the k-bit grid is a subset of the int8 grid and the
weights do not move. The other ``Linear`` layers get torch's per-channel int8 observer.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .._validation import validate_params
from ..pruning._masks import copy_module, make_permanent
from ..pruning._select import MODULE
from ._grid import _levels
from ._layers import quantized_bits

__all__ = ["export_int8"]


def _quiet_torch_ao() -> warnings.catch_warnings:
    """Silence torch's notices that ``torch.ao.quantization`` and its quantized tensors are
    deprecated (the API still works; the docstring of :func:`export_int8` says so)."""
    context = warnings.catch_warnings()
    context.__enter__()
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.ao.quant")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize_per_channel")
    return context


def _exact_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` (on the ``bits``-bit grid of its rows) as a per-channel qint8 tensor whose
    int values are the grid's levels times ``127 // L``."""
    levels = _levels(bits)
    multiple = 127 // levels
    amax = weight.detach().abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / levels, torch.ones_like(amax)) / multiple
    zero = torch.zeros(weight.shape[0], dtype=torch.int64)
    return torch.quantize_per_channel(weight.detach().cpu().float(), scale.double().cpu(), zero,
                                      0, torch.qint8)


@validate_params({"module": MODULE}, prefer_skip_nested_validation=True)
def export_int8(module: nn.Module) -> nn.Module:
    """An int8 copy of ``module`` for CPU inference (``torch.ao.quantization.quantize_dynamic``).

    Every ``nn.Linear`` becomes a ``DynamicQuantizedLinear``: int8 weights per output channel,
    activations quantized to 8 bits per batch on the fly (so its outputs differ slightly from
    the float module's). A layer quantized by :func:`quantize_module` keeps exactly its
    k-bit values (every k-bit grid is a subset of the int8 grid, see the module notes); any
    other ``Linear`` is quantized by torch's per-channel observer. Convolutions and the
    other layers stay in float (dynamic quantization has no int8 convolution), with their
    grid values when quantized. Pruning masks are made permanent (zeros stay zero).

    ``torch.ao.quantization`` is deprecated by torch in favour of the ``torchao`` package; it
    still works in the torch this package supports, and its deprecation notices are silenced
    here.

    Parameters
    ----------
    module : torch.nn.Module
        Not modified; on CPU.

    Returns
    -------
    torch.nn.Module
        A new module in eval mode, with no float parameters in its ``Linear`` layers (it can be
        audited, e.g. by :class:`~fairprune_sk.ExcessRiskFrame`, but not trained).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from fairprune_sk.quantization import export_int8, quantize_module
    >>> _ = torch.manual_seed(0)
    >>> net = quantize_module(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), 4)
    >>> fast = export_int8(net)
    >>> repr(fast[0]).startswith("DynamicQuantizedLinear")
    True
    >>> x = torch.randn(5, 8)
    >>> bool(torch.allclose(fast(x), net(x), atol=0.05))
    True
    """
    bits = quantized_bits(module)
    plain = make_permanent(copy_module(module)).cpu().eval()
    context = _quiet_torch_ao()
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        exported = quantize_dynamic(plain, {nn.Linear: per_channel_dynamic_qconfig},
                                    dtype=torch.qint8, inplace=False)
        float_layers = dict(plain.named_modules())
        for name, layer in exported.named_modules():
            if name in bits and isinstance(float_layers.get(name), nn.Linear):
                source = float_layers[name]
                layer.set_weight_bias(_exact_weight(source.weight, bits[name]), source.bias)
    finally:
        context.__exit__(None, None, None)
    return exported.eval()
