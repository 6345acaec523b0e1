"""Copies of the state training changes: optimizer states, history rows and callbacks.

Used by the transactions of :class:`~fairprune_sk.PrunableNetClassifier` (a failed call leaves
the estimator as it was) and by its copies (``pruned_copy``, ``dense_reference``, ``compact``),
which share no mutable state with their original.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch

__all__ = ["clone_state", "copy_callbacks", "copy_history"]


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
