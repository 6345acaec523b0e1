"""The k-bit symmetric grid: levels, scales and the fake-quantized value of a tensor.

A ``bits``-bit symmetric grid has the ``2L + 1`` levels ``-L, ..., L`` with
``L = 2**(bits - 1) - 1``, times one scale per slice along dimension 0 (an output channel of
a weight, one sample of a batch of inputs): ``scale = max|x| / L`` over the slice, so the
largest entry of every slice is exactly representable. Zero maps to zero, so a pruned weight
stays pruned. The straight-through estimator passes gradients through the rounding.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import torch

from .._validation import Interval, check_args, validate_params

__all__ = [
    "BITS",
    "QUANTIZATION_BITS",
    "fake_quantize",
    "grid_levels",
    "quantized_value",
    "straight_through",
]

#: The weight widths a grid supports.
QUANTIZATION_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)

#: sklearn constraint of a ``bits`` argument.
BITS: list[Any] = [Interval(Integral, QUANTIZATION_BITS[0], QUANTIZATION_BITS[-1], closed="both")]


def grid_levels(bits: int) -> int:
    """``L = 2**(bits - 1) - 1``, the largest level of the symmetric ``bits``-bit grid.

    Examples
    --------
    >>> from fairprune_sk.quantization._grid import grid_levels
    >>> grid_levels(8), grid_levels(2)
    (127, 1)
    """
    check_args({"bits": BITS}, {"bits": bits}, "grid_levels")
    return _levels(bits)


def _levels(bits: int) -> int:
    return 2 ** (int(bits) - 1) - 1


def quantized_value(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    """:func:`fake_quantize` without the argument checks (the forward hooks' path)."""
    levels = _levels(bits)
    with torch.no_grad():
        scale = _scales(tensor, levels)
        return torch.round(tensor / scale).clamp(-levels, levels) * scale


def _scales(tensor: torch.Tensor, levels: int) -> torch.Tensor:
    """``max|x| / L`` of each slice along dimension 0 (1 for an all-zero slice), broadcastable."""
    flat = tensor.detach().reshape(tensor.shape[0], -1) if tensor.dim() else tensor.reshape(1, 1)
    amax = flat.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / levels, torch.ones_like(amax))
    return scale.reshape((-1,) + (1,) * max(tensor.dim() - 1, 0))


@validate_params(
    {"tensor": [torch.Tensor], "bits": BITS}, prefer_skip_nested_validation=True
)
def fake_quantize(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    """The value of ``tensor`` on the symmetric ``bits``-bit grid of each slice along dim 0.

    Each slice ``tensor[i]`` (an output channel of a weight, a sample of a batch) is rounded to
    ``round(x / s_i).clamp(-L, L) * s_i`` with ``s_i = max|tensor[i]| / L`` and
    ``L = 2**(bits - 1) - 1``: at most ``2**bits - 1`` distinct values per slice, zero kept at
    zero. No gradient flows through the rounding (see :func:`straight_through`).

    Parameters
    ----------
    tensor : torch.Tensor of shape (n, ...)
        Floating point.
    bits : int in [2, 8]

    Returns
    -------
    torch.Tensor
        Of the same shape and dtype, detached.

    Examples
    --------
    >>> import torch
    >>> from fairprune_sk.quantization import fake_quantize
    >>> fake_quantize(torch.tensor([[0.1, -0.4, 1.0, 0.0]]), 2)
    tensor([[0., -0., 1., 0.]])
    >>> fake_quantize(torch.tensor([[0.1, -0.4, 1.0, 0.0]]), 3)
    tensor([[ 0.0000, -0.3333,  1.0000,  0.0000]])
    """
    return quantized_value(tensor, bits)


def straight_through(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    """:func:`fake_quantize`'s value, with the gradient of the identity (straight-through).

    ``q + (x - x.detach())``: the forward value is exactly the grid's ``q`` and the gradient
    with respect to ``x`` is 1, so training updates the float ``x`` while the forward pass
    only ever sees grid values.
    """
    return quantized_value(tensor, bits) + (tensor - tensor.detach())
