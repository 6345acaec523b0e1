"""Persistence of a pruned net: skorch's ``save_params`` / ``load_params`` with masks and θ*.

A pruned tensor is saved as torch's reparametrisation (``<name>_orig`` and ``<name>_mask``), so
the masks travel with the weights; a quantized one adds its grid's ``<name>_bits``. Loading
installs (or removes) the same pruning and grid on the module first. The dense weights θ*
travel in their own file (``f_dense_state_dict``). ``pickle`` works on the whole estimator
(skorch's ``__getstate__``; the pruned weights are detached first).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn
from torch.nn.utils import prune as torch_prune

from ..pruning._masks import pruning_hooks
from ..quantization._layers import BITS_SUFFIX, WeightQuantizer, install_quantizer

__all__ = ["match_pruning"]


def match_pruning(module: nn.Module, state_dict: Mapping, prefix: str = "") -> bool:
    """Prune / unprune the tensors of ``module`` so that its keys match ``state_dict``'s.

    A plain tensor ``w`` whose state has ``w_orig`` and ``w_mask`` gets torch's pruning
    reparametrisation with that mask; a pruned tensor whose state has a plain ``w`` loses it.
    A tensor whose state has ``w_bits`` gets a quantization grid (its widths are then loaded),
    and a quantized one whose state has none loses it. Returns whether anything changed.
    """
    changed = False
    for qualname, sub in list(module.named_modules()):
        for hook in list(sub._forward_pre_hooks.values()):
            key = f"{prefix}{qualname}." if qualname else prefix
            if (isinstance(hook, WeightQuantizer)
                    and f"{key}{hook.tensor_name}{BITS_SUFFIX}" not in state_dict):
                hook.remove(sub)
    for qualname, sub, name, _ in list(pruning_hooks(module)):
        key = f"{prefix}{qualname}.{name}" if qualname else f"{prefix}{name}"
        if key in state_dict and f"{key}_orig" not in state_dict:
            torch_prune.remove(sub, name)
            changed = True
    for qualname, sub in list(module.named_modules()):
        for name in list(sub._parameters):
            key = f"{prefix}{qualname}.{name}" if qualname else f"{prefix}{name}"
            mask = state_dict.get(f"{key}_mask")
            if mask is not None and f"{key}_orig" in state_dict and key not in state_dict:
                parameter = getattr(sub, name)
                torch_prune.custom_from_mask(
                    sub, name, mask=mask.to(device=parameter.device, dtype=parameter.dtype)
                )
                changed = True
    for qualname, sub in list(module.named_modules()):
        key = f"{prefix}{qualname}.weight" if qualname else f"{prefix}weight"
        bits = state_dict.get(f"{key}{BITS_SUFFIX}")  # quantize_module's grids are on weights
        if bits is not None and not hasattr(sub, f"weight{BITS_SUFFIX}"):
            weight_bits, input_bits = (int(value) for value in bits.tolist())
            install_quantizer(sub, "weight", weight_bits, input_bits)
            changed = True
    return changed
