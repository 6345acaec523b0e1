"""Quantization of ``torch.nn.Module`` objects: simulated k-bit grids and int8 export.

This package knows nothing about estimators; it works beside :mod:`fairprune_sk.pruning` on
the same layers (the ``weight`` of every ``nn.Linear`` and ``nn.Conv1d/2d/3d``) and the same
reparametrisation (torch prune's ``weight_orig`` + ``weight_mask``), so pruning then quantizing
combine: the forward pass uses ``q(weight_orig * weight_mask)`` and pruned weights stay zero.

Modules (one concept each; import from ``fairprune_sk.quantization``):

- ``_grid``: the symmetric k-bit grid per output channel (:func:`fake_quantize`) and its
  straight-through estimator;
- ``_layers``: putting layers on the grid (:func:`quantize_module`), reading it
  (:func:`is_quantized`, :func:`quantized_bits`, :func:`quantization_error`) and taking it off
  (:func:`dequantize`);
- ``_export``: an int8 module for CPU inference through ``torch.ao.quantization``
  (:func:`export_int8`).

:func:`fairprune_sk.pruning.effective_state_dict`, :func:`~fairprune_sk.pruning.sparsity` and
:func:`~fairprune_sk.pruning.make_permanent` see the grid's values (a weight rounded to the
grid's zero counts as a zero); :func:`~fairprune_sk.pruning.prune_module` and
:func:`~fairprune_sk.pruning.compact` refuse a quantized module (prune and compact first).
"""

from ._export import export_int8
from ._grid import QUANTIZATION_BITS, fake_quantize
from ._layers import (
    dequantize,
    is_quantized,
    quantization_error,
    quantize_module,
    quantized_bits,
)

__all__ = [
    "QUANTIZATION_BITS",
    "dequantize",
    "export_int8",
    "fake_quantize",
    "is_quantized",
    "quantization_error",
    "quantize_module",
    "quantized_bits",
]
