"""Persistence of a pruned net: skorch's ``save_params`` / ``load_params`` with masks and θ*.

A pruned tensor is saved as torch's reparametrisation (``<name>_orig`` and ``<name>_mask``), so
the masks travel with the weights; loading installs (or removes) the same pruning on the module
first. The dense weights θ* travel in their own file (``f_dense_state_dict``). ``pickle`` works
on the whole estimator (skorch's ``__getstate__``; the pruned weights are detached first).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .. import pruning
from ..pruning._masks import pruning_hooks

__all__ = ["PersistenceMixin"]


def _match_pruning(module: nn.Module, state_dict: Mapping, prefix: str = "") -> bool:
    """Prune / unprune the tensors of ``module`` so that its keys match ``state_dict``'s.

    A plain tensor ``w`` whose state has ``w_orig`` and ``w_mask`` gets torch's pruning
    reparametrisation with that mask; a pruned tensor whose state has a plain ``w`` loses it.
    Returns whether anything changed.
    """
    changed = False
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
    return changed


class PersistenceMixin:
    """``save_params`` / ``load_params`` / pickling of a prunable skorch net."""

    def save_params(
        self,
        f_params: Any = None,
        f_optimizer: Any = None,
        f_criterion: Any = None,
        f_history: Any = None,
        use_safetensors: bool = False,
        *,
        f_dense_state_dict: Any = None,
        **kwargs: Any,
    ) -> None:
        """skorch's ``save_params``, plus θ*; a pruned module is saved with its masks.

        ``f_params`` holds the module's ``state_dict`` as it is: a pruned tensor is saved as
        ``<name>_orig`` and ``<name>_mask`` (torch's reparametrisation), so the masks travel
        with the weights. ``f_dense_state_dict`` saves the dense weights θ*
        (``dense_state_dict_``), which the audit (:meth:`dense_reference`) needs. Fitted
        attributes (``classes_``, ``n_features_in_``, ...) are not saved: load into a net
        built with the same ``module__*`` parameters (``n_features``, ``n_classes``) and
        ``classes``, or pickle the whole net.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from sklearn.datasets import make_classification
        >>> from fairprune_sk import PrunableNetClassifier
        >>> from fairprune_sk.models import MLP
        >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
        >>> net = PrunableNetClassifier(MLP, max_epochs=2, random_state=0).fit(X, y).prune(0.7)
        >>> folder = Path(tempfile.mkdtemp())
        >>> files = dict(f_params=folder / "w.pt", f_optimizer=folder / "opt.pt",
        ...              f_history=folder / "h.json", f_dense_state_dict=folder / "dense.pt")
        >>> net.save_params(**files)
        >>> new = PrunableNetClassifier(MLP, module__n_features=8, module__n_classes=2,
        ...                             classes=[0, 1]).initialize()
        >>> new.load_params(**files)
        >>> round(new.sparsity_, 2), bool(np.allclose(new.predict_proba(X), net.predict_proba(X)))
        (0.7, True)
        >>> import shutil; shutil.rmtree(folder)
        """
        super().save_params(
            f_params=f_params,
            f_optimizer=f_optimizer,
            f_criterion=f_criterion,
            f_history=f_history,
            use_safetensors=use_safetensors,
            **kwargs,
        )
        if f_dense_state_dict is None:
            return
        state = getattr(self, "dense_state_dict_", None)
        if state is None:
            raise ValueError(
                f"this {type(self).__name__} was never pruned: it has no dense_state_dict_ "
                "to save (leave f_dense_state_dict out)"
            )
        if use_safetensors:
            from safetensors.torch import save, save_file

            if isinstance(f_dense_state_dict, str | os.PathLike):
                save_file(dict(state), f_dense_state_dict)
            else:
                f_dense_state_dict.write(save(dict(state)))
        else:
            torch.save(dict(state), f_dense_state_dict)

    def load_params(
        self,
        f_params: Any = None,
        f_optimizer: Any = None,
        f_criterion: Any = None,
        f_history: Any = None,
        checkpoint: Any = None,
        use_safetensors: bool = False,
        *,
        f_dense_state_dict: Any = None,
        **kwargs: Any,
    ) -> None:
        """skorch's ``load_params``; the module takes the pruning of the state it loads.

        A state saved from a pruned net (``<name>_orig`` / ``<name>_mask``) installs the same
        masks on an unpruned module before loading (and a dense state removes them), then
        re-initialises the optimizer so that a saved optimizer state (``f_optimizer``) matches
        the parameters; ``sparsity_`` is recomputed. ``f_dense_state_dict`` loads θ*
        (see :meth:`save_params`).
        """
        handles = [
            module.register_load_state_dict_pre_hook(self._match_pruning_hook)
            for module in self._torch_state_objects()
            if isinstance(module, nn.Module)
        ]
        try:
            super().load_params(
                f_params=f_params,
                f_optimizer=f_optimizer,
                f_criterion=f_criterion,
                f_history=f_history,
                checkpoint=checkpoint,
                use_safetensors=use_safetensors,
                **kwargs,
            )
        finally:
            for handle in handles:
                handle.remove()
        if f_dense_state_dict is not None:
            if use_safetensors:
                from safetensors.torch import load, load_file

                if isinstance(f_dense_state_dict, str | os.PathLike):
                    state = load_file(f_dense_state_dict)
                else:
                    state = load(f_dense_state_dict.read())
            else:
                state = torch.load(f_dense_state_dict, map_location="cpu", weights_only=True)
            self.dense_state_dict_ = {key: value.cpu() for key, value in state.items()}
        if self.initialized_ and hasattr(self, "module_"):
            pruning.detach_pruned_weights(self.module_)
            self.sparsity_ = float(pruning.sparsity(self.module_))

    def _match_pruning_hook(self, module: nn.Module, state_dict: Mapping, prefix: str,
                            *args: Any) -> None:
        """Before a module loads ``state_dict``: give it the pruning reparametrisation the state
        has (masks on, or off), and rebuild the optimizer if that changed the parameters."""
        if _match_pruning(module, state_dict, prefix) and module is getattr(self, "module_", None):
            self.initialize_optimizer()

    def __getstate__(self) -> dict:
        if getattr(self, "initialized_", False) and hasattr(self, "module_"):
            pruning.detach_pruned_weights(self.module_)
        return super().__getstate__()
