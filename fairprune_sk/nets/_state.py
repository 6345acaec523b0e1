"""Copies of the state training changes: optimizer states, history rows and callbacks.

Used by the transactions of :class:`~fairprune_sk.PrunableNetClassifier` (a failed call leaves
the estimator as it was) and by its copies (``pruned_copy``, ``dense_reference``, ``compact``),
which share no mutable state with their original; and the dense weights θ* of a module that
``torch.nn.utils.prune`` reparametrised (:func:`original_state_dict`).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

from ..pruning._masks import pruning_hooks, transform_buffer_keys

__all__ = ["clone_state", "copy_callbacks", "copy_history", "original_state_dict"]


def clone_state(value: Any) -> Any:
    """A copy of an optimizer's ``state_dict``: tensors cloned, containers rebuilt."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: clone_state(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clone_state(item) for item in value)
    return value


def _copy_row(row: Any) -> Any:
    """A history row whose dict and batch list can be appended to without touching ``row``."""
    if not isinstance(row, dict):
        return row
    return {**row, "batches": [dict(batch) for batch in row.get("batches", [])]}


def copy_history(history: Any) -> Any:
    """A history whose rows can be appended to without touching ``history``'s."""
    return type(history)(_copy_row(row) for row in history)


def copy_callbacks(callbacks: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Independent copies of initialised callbacks, as ``sklearn.base.clone`` copies parameters.

    A callback that cannot be deep-copied (a logger holding a lock or an open writer) is
    shared, with a warning naming it: it then sees the copy's epochs too.
    """
    copies = []
    for name, callback in callbacks:
        try:
            callback = copy.deepcopy(callback)
        except (TypeError, copy.Error, RuntimeError) as error:
            warnings.warn(
                f"callback {name!r} ({type(callback).__name__}) cannot be copied ({error}); "
                "the copy of the net shares it with the original",
                UserWarning,
                stacklevel=3,
            )
        copies.append((name, callback))
    return copies


def original_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights before its torch prune masks: plain names, CPU copies.

    A tensor ``w`` that ``torch.nn.utils.prune`` reparametrised is taken from ``w_orig`` (where
    torch keeps its values, pruned entries included) and ``w_mask`` is left out; every other
    entry is copied as it is. For a module without masks this is a copy of its ``state_dict``.
    A quantized tensor is also taken from ``w_orig`` (its float values), and the grid's
    ``w_bits`` buffer is left out.
    """
    pruned = {f"{qualname}.{name}" if qualname else name
              for qualname, _, name, _ in pruning_hooks(module)}
    grids = transform_buffer_keys(module)
    state = {}
    for key, value in module.state_dict().items():
        if key in grids or key.endswith("_mask") and key.removesuffix("_mask") in pruned:
            continue
        if key.endswith("_orig") and key.removesuffix("_orig") in pruned:
            key = key.removesuffix("_orig")
        state[key] = value.detach().to("cpu", copy=True)
    return state
