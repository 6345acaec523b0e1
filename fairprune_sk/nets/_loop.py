"""The per-batch hooks of skorch's loop for a prunable net: criterion, loss, mode, callbacks.

The criterion is built with ``reduction="none"`` once (as skorch's FAQ does for sample
weights), so one criterion call per batch gives the per-sample losses that the mean loss, the
sample weights and the group terms of :class:`~fairprune_sk.FairConstrainedNet` all use. The
mode switch and the callback dispatch skip what is a no-op on every batch (modules already in
the mode, callbacks without the batch method), which skorch pays per batch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.dataset import get_len
from skorch.utils import to_tensor
from torch import nn

from ._data import INPUT_KEY, SAMPLE_WEIGHT_KEY

__all__ = ["LoopHooksMixin"]

#: The events skorch notifies on every batch.
_BATCH_EVENTS = ("on_batch_begin", "on_batch_end", "on_grad_computed")


def _all_in_mode(module: nn.Module, training: bool) -> bool:
    """Whether ``module`` and all its submodules have ``training`` already (a plain walk:
    ``Module.modules()`` builds names and a memo set, which costs more than the check)."""
    stack = [module]
    while stack:
        current = stack.pop()
        if current.training != training:
            return False
        stack.extend(child for child in current._modules.values() if child is not None)
    return True


def _batch_size(batch: Any) -> int:
    """The number of samples in a batch, as skorch's ``get_len`` counts them."""
    X = batch[0] if isinstance(batch, tuple | list) else batch
    if isinstance(X, Mapping) and INPUT_KEY in X:
        X = X[INPUT_KEY]
    if isinstance(X, torch.Tensor | np.ndarray):
        return X.shape[0]
    return get_len(X)


class LoopHooksMixin:
    """skorch's criterion, loss, mode and callback hooks, as a prunable net uses them."""

    def initialize_criterion(self) -> Self:
        """Build ``criterion_`` with ``reduction="none"``: one loss per sample, always.

        :meth:`get_loss` takes their (sample-weighted) mean, and the constrained net reuses the
        same per-sample losses for its group terms, so the criterion runs once per batch (as
        skorch's FAQ does for sample weights). A criterion instance whose reduction is not
        ``"none"`` is copied with ``reduction="none"``; the user's object is left as it is.

        Raises
        ------
        ValueError
            If ``criterion__reduction`` is set to anything but ``"none"``.
        """
        kwargs = self.get_params_for("criterion")
        reduction = kwargs.pop("reduction", "none")
        if reduction != "none":
            raise ValueError(
                f"criterion__reduction must be 'none' (got {reduction!r}): the criterion gives "
                "one loss per sample and get_loss takes their (sample-weighted) mean"
            )
        if isinstance(self.criterion, nn.Module) and not kwargs:
            criterion = self.criterion
            if getattr(criterion, "reduction", "none") != "none":
                criterion = copy.deepcopy(criterion)
                criterion.reduction = "none"
        else:
            criterion = self.initialized_instance(self.criterion, {**kwargs, "reduction": "none"})
        self.criterion_ = criterion
        return self

    def per_sample_loss(self, y_pred: torch.Tensor, y_true: Any) -> torch.Tensor:
        """The criterion on the batch: one loss per sample (``reduction="none"``)."""
        return super().get_loss(y_pred, y_true)

    def get_loss(
        self, y_pred: torch.Tensor, y_true: Any, X: Any = None, training: bool = False
    ) -> torch.Tensor:
        """Mean loss, weighted by the batch's ``sample_weight`` when the data carry one."""
        return self._mean_loss(self.per_sample_loss(y_pred, y_true), y_true, X)

    def _mean_loss(self, losses: torch.Tensor, y_true: Any, X: Any) -> torch.Tensor:
        """The batch loss from the per-sample ``losses``: their mean, weighted by the batch's
        ``sample_weight``; without one, what the criterion's ``reduction="mean"`` gives (for
        torch's cross-entropy / NLL with class ``weight``: divided by the batch's total class
        weight)."""
        weight = X.get(SAMPLE_WEIGHT_KEY) if isinstance(X, Mapping) else None
        if weight is not None:
            return (losses * to_tensor(weight, device=losses.device)).mean()
        criterion = self.criterion_
        class_weight = getattr(criterion, "weight", None)
        if class_weight is None or not isinstance(criterion, nn.CrossEntropyLoss | nn.NLLLoss):
            return losses.mean()
        y = to_tensor(y_true, device=class_weight.device)
        if y.is_floating_point():  # class probabilities: torch's mean is over the batch
            return losses.mean()
        y = y[y != criterion.ignore_index]
        return losses.sum() / class_weight[y].sum().to(losses.device)

    def _set_training(self, training: bool = True) -> None:
        """skorch's train / eval switch, skipping modules already entirely in that mode.

        skorch switches every module and criterion on every batch; ``Module.train`` walks the
        whole tree and sets each flag through ``Module.__setattr__``. A module whose submodules
        all have the flag already is left alone (a ``train`` override that changes
        submodules' modes still runs whenever a flag differs).
        """
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, nn.Module) and not _all_in_mode(module, training):
                module.train(training)

    def run_single_epoch(
        self, iterator: Any, training: bool, prefix: str, step_fn: Any, **fit_params: Any
    ) -> None:
        """skorch's loop over one epoch's batches, with the batch size read off the input.

        The same steps, notifications and history records as skorch's, in the same order;
        only ``{prefix}_batch_size`` is the first dimension of the batch's input
        (:func:`_batch_size`) instead of skorch's ``get_len``, which walks every array of a
        dict batch and compares their lengths on every batch (a dict's arrays have one length:
        skorch's ``Dataset`` checked it when it was built).
        """
        if iterator is None:
            return
        batch_count = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            self.history.record_batch(prefix + "_loss", step["loss"].item())
            self.history.record_batch(prefix + "_batch_size", _batch_size(batch))
            self.notify("on_batch_end", batch=batch, training=training, **step)
            batch_count += 1
        self.history.record(prefix + "_batch_count", batch_count)

    def notify(self, method_name: str, **cb_kwargs: Any) -> None:
        """skorch's callback dispatch; per batch, only callbacks that define the batch method.

        ``on_batch_begin``, ``on_batch_end`` and ``on_grad_computed`` of skorch's ``Callback``
        do nothing, and most callbacks (timers, scorers, loggers) act per epoch; they are not
        called per batch.
        """
        if method_name not in _BATCH_EVENTS:
            return super().notify(method_name, **cb_kwargs)
        getattr(self, method_name)(self, **cb_kwargs)
        no_op = getattr(Callback, method_name)
        for _, callback in self.callbacks_:
            if getattr(type(callback), method_name, None) is not no_op:
                getattr(callback, method_name)(self, **cb_kwargs)
        return None
