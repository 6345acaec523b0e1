"""The keys, messages and helpers shared by :class:`~fairprune_sk.FairConstrainedNet` and its
dual-ascent callback: the per-sample keys of the training dict, the divergence error, and θ*'s
or θ's logits outside skorch's loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "GROUP_KEY",
    "REFERENCE_CORRECT_KEY",
    "REFERENCE_LOSS_KEY",
    "DivergenceError",
    "DIVERGED",
    "EMPTY_HELDOUT_GROUP",
    "eval_logits",
]

GROUP_KEY = "group"
REFERENCE_LOSS_KEY = "reference_loss"
REFERENCE_CORRECT_KEY = "reference_correct"
EMPTY_HELDOUT_GROUP = (
    "constraint_split={split!r} leaves group {group!r} ({n} training rows) with no held-out "
    "rows for the dual steps; raise constraint_split, merge small groups, or set "
    "constraint_split=None"
)
DIVERGED = (
    "{name} diverged: {what} in epoch {epoch} ({phase}, multipliers {multipliers}). Lower "
    "dual_lr (got {dual_lr!r}) or lr (got {lr!r}), or use dual_dynamics='damped' (multipliers "
    "capped at multiplier_cap); the estimator was restored to its state before this call"
)


def eval_logits(module: torch.nn.Module, X: np.ndarray, device: Any) -> torch.Tensor:
    """Eval-mode logits of ``X`` in chunks, without gradients; the module's mode is restored.

    Calls the module directly rather than skorch's ``forward``, whose ``DataLoader`` draws
    from torch's global RNG and would change the shuffling of the training that follows.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            chunks = np.array_split(np.asarray(X), max(1, len(X) // 8192))
            return torch.cat([module(torch.as_tensor(chunk, device=device)) for chunk in chunks])
    finally:
        module.train(was_training)


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or weight (the estimator is restored)."""
