"""A plain, functional view of a module: its logits, its caller's state, its batches.

Helpers shared by the evaluator, the Hessian operator and :class:`GroupDiagnostics`. The
pruning masks of a *module* are read by :mod:`fairprune_sk.pruning` (``effective_state_dict``,
``unpruned_copy``); :func:`_fold_pruning_state` only serves ``params=`` mappings a user passes,
which may be a pruned module's raw ``state_dict`` (``*_orig`` / ``*_mask`` pairs).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn


def _fold_pruning_state(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A state_dict with ``name_orig`` / ``name_mask`` pairs folded into ``name``."""
    plain: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state:
            continue
        tensor = torch.as_tensor(value)
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state:
            base = key[: -len("_orig")]
            mask = torch.as_tensor(state[base + "_mask"])
            plain[base] = tensor.detach() * mask.to(dtype=tensor.dtype, device=tensor.device)
        else:
            plain[key] = tensor.detach()
    return plain


def _as_logits(out: Any) -> torch.Tensor:
    """Module output as (batch, n_classes) logits; one output column is a binary logit."""
    if isinstance(out, tuple | list):
        out = out[0]
    if not torch.is_tensor(out):
        raise ValueError(f"the module must return a tensor of logits; got {type(out).__name__}")
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2:
        raise ValueError(
            f"the module must return logits of shape (batch, n_classes); got {tuple(out.shape)}"
        )
    if out.shape[1] == 1:  # a single logit z: softmax([0, z]) = [1 - σ(z), σ(z)]
        out = torch.cat([torch.zeros_like(out), out], dim=1)
    return out


class _KeptState:
    """The caller's train/eval flag of every submodule and ``.grad`` of every parameter.

    :meth:`restore` puts both back as they were found: each submodule gets its own flag back
    (not its parent's, as ``module.train(flag)`` would give), a ``.grad`` that was None is None
    again and an existing gradient tensor is the same object again. The numerical code never
    accumulates into a parameter's ``.grad`` (it differentiates detached copies with
    ``torch.autograd.grad``), so the tensor also keeps its values.
    """

    def __init__(self, module: nn.Module) -> None:
        self.modes = [(m, m.training) for m in module.modules()]
        self.grads = [(p, p.grad) for p in module.parameters()]

    def restore(self) -> None:
        for m, training in self.modes:
            m.training = training
        for p, gradient in self.grads:
            if p.grad is not gradient:
                p.grad = gradient


def _batches(idx: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(idx), batch_size):
        yield idx[start : start + batch_size]
