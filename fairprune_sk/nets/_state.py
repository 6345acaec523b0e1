"""Estimator state without wholesale copies: seeded runs, transactions, sibling estimators.

A failed ``fit`` / ``partial_fit`` / ``prune`` leaves the estimator as it was, and copies such as
:meth:`~fairprune_sk.PrunableNetClassifier.dense_reference` share everything but their module,
without ``deepcopy``: callbacks holding locks or writers (loggers) are never copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import torch
from torch import nn

from .. import pruning
from .._validation import torch_seed

__all__ = ["NetStateMixin"]


def _clone_state(value: Any) -> Any:
    """A copy of an optimizer's ``state_dict``: tensors cloned, containers rebuilt."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _clone_state(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clone_state(item) for item in value)
    return value


def _copy_row(row: Any) -> Any:
    """A history row whose dict and batch list can be appended to without touching ``row``."""
    if not isinstance(row, dict):
        return row
    return {**row, "batches": [dict(batch) for batch in row.get("batches", [])]}



class NetStateMixin:
    """Seeding, transactions and siblings for a skorch net (mixed into the estimator)."""

    @contextmanager
    def _seeded(self, offset: int = 0) -> Iterator[None]:
        """Seed torch from ``random_state`` and restore the caller's RNG state afterwards."""
        seed = torch_seed(self.random_state, offset)
        if seed is None:
            yield
            return
        devices = [] if str(self.device).startswith("cpu") else None
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _trains_in_place(self) -> bool:
        """Whether ``fit`` will train existing torch objects (warm start, a module instance)."""
        return bool(self.warm_start) or isinstance(self.module, nn.Module)

    def _torch_state_objects(self) -> list[Any]:
        """The modules, criteria and optimizers that training changes in place (no duplicates)."""
        names = [f"{name}_" for name in (*self._modules, *self._criteria, *self._optimizers)]
        objects = [getattr(self, name, None) for name in names]
        if isinstance(self.module, nn.Module):
            objects.append(self.module)  # trained in place when it is module_ itself
        unique = {id(obj): obj for obj in objects if hasattr(obj, "state_dict")}
        return list(unique.values())

    @contextmanager
    def _transaction(self, *, in_place: bool) -> Iterator[None]:
        """Restore the estimator's state if the block raises (a failed fit changes nothing).

        The attributes are restored from a shallow copy of ``__dict__`` (new objects built in
        the block are dropped; the user's callback objects are the same objects). What the
        block may change *in place* is snapshotted on its own, and only with ``in_place``
        (warm starts, ``partial_fit``, a module instance): the state dicts of the modules,
        criteria and optimizers (cloned tensors) and the length of the history. Nothing else
        is copied, so callbacks holding locks or writers (loggers) are never copied.
        """
        saved = dict(self.__dict__)
        states = []
        if in_place:
            for obj in self._torch_state_objects():
                state = obj.state_dict()
                if isinstance(obj, torch.optim.Optimizer):
                    state = _clone_state(state)
                else:
                    state = {key: value.detach().clone() for key, value in state.items()}
                states.append((obj, state))
        history = saved.get("history_")
        n_rows = len(history) if history is not None else 0
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            for obj, state in states:
                obj.load_state_dict(state)
            if history is not None:
                del history[n_rows:]
            if hasattr(self, "module_"):
                pruning.detach_pruned_weights(self.module_)
            raise

    def _sibling(self, module: nn.Module) -> Self:
        """A fitted estimator like this one, with its own ``module``, optimizer and history.

        Parameters, fitted attributes and the callback objects are shared (nothing is
        deep-copied, so a logger holding a lock keeps working and keeps logging); the history
        rows are copied, so training the sibling does not write into this net's history.
        """
        sibling = object.__new__(type(self))
        sibling.__dict__.update(self.__dict__)
        for registry in ("_modules", "_criteria", "_optimizers"):
            if registry in self.__dict__:
                setattr(sibling, registry, list(self.__dict__[registry]))
        sibling.module_ = module
        sibling.callbacks_ = list(self.callbacks_)
        sibling.history_ = type(self.history_)(_copy_row(row) for row in self.history_)
        sibling.initialize_optimizer()
        return sibling
