"""The dual-ascent callback of :class:`~fairprune_sk.FairConstrainedNet`.

The dual state (multipliers, PI memory, replay buffer, loss sums since the last dual step,
held-out rows, best iterate) is the net's fitted attribute ``dual_state_``
(:class:`~fairprune_sk.constrained._dual.DualState`): whatever training changes belongs to the
estimator that trains, so copies of a net never share it. :class:`DualAscent` holds no state;
it turns what the training batches measure into violations and dual steps on the state of the
net it is called with. Dual steps every ``k`` batches count batches across epochs.

CEAG's dual signal (``constraint_target="accuracy_gap"``):

- The dual step acts on the true, accuracy-based ψ_a, estimated over a per-group replay buffer
  of the last ``replay_size`` predictions of the training batches (:class:`GroupReplayBuffer`),
  so a small group gets a stable estimate; the overall drop is the group drops weighted by the
  groups' training shares. A group not yet seen has no estimate and no dual step.
- It acts on the lower confidence bound ``ψ̂_a − noise_margin · SE_a`` of the buffer estimate
  (one standard error by default): where ψ is at its noise level (Adult) the multipliers stay
  small and cost no accuracy; where a group clearly pays more (Fashion-MNIST's confusable
  classes) they act fully.
- The returned weights are the mean of the iterates at the dual steps of the last quarter of
  the fine-tuning batches (``average_tail``, :class:`TailAverage`). The last iterate of the
  primal-dual game swings with the SGD noise of the confusable groups (ψ of a class moves by
  ±0.05-0.1 from one dual step to the next on Fashion-MNIST); the tail average does not, and it
  is what made the cut of ψ hold on test data on every block of seeds (docs/mitigation.md).
  Averaging without the constraint (``dual_lr=0``) does not cut ψ.
- With ``constraint_split`` the dual steps measure the constraints exactly, on a held-out,
  group × label stratified part of the training data (Cotter et al., ICML 2019) that the primal
  fine-tuning steps never see, and (``best_iterate=True``) the fine-tuned net keeps the iterate
  that is best on it: the most accurate one that meets every constraint, or while none does,
  the one closest to meeting them (Cotter et al.'s best-iterate rule). Measured
  (docs/mitigation.md, Fashion-MNIST): it cuts the test max ψ further than the training duals
  but costs more accuracy (the primal steps lose the held-out rows, and the rule prefers a
  low-ψ iterate to an accurate one), and at 99 % sparsity it selects degenerate iterates; so it
  is an option, not the default.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.dataset import unpack_data

from ..nets._data import as_numpy
from ._constraints import GROUP_KEY, REFERENCE_CORRECT_KEY
from ._dual import TailAverage

__all__ = ["DualAscent"]

DUAL_UPDATE_TOO_RARE = (
    "dual_update={k} is more than the {n} training batches of this run ({epochs} epoch(s) of "
    "{per_epoch}): the dual step is taken at the end of every epoch instead. Lower "
    "dual_update or batch_size for more dual steps"
)


def _batches_per_epoch(net: Any, X: Any, y: Any) -> int:
    """The training batches of one epoch over ``X``: the length of the net's training iterator
    (a user's ``DataLoader`` counts its own batches). With skorch's ``train_split`` the rows
    of the split are not known here, and all rows are counted at ``batch_size``."""
    if net.train_split is None and X is not None:
        try:
            return len(net.get_iterator(net.get_dataset(X, y), training=True))
        except TypeError:  # an iterator without a length
            pass
    n_rows = 0 if y is None else len(y)
    batch_size = net.batch_size if net.batch_size > 0 else max(n_rows, 1)
    return int(np.ceil(n_rows / batch_size))


class DualAscent(Callback):
    """Dual steps on the multipliers (every epoch or every ``k`` batches) and their record.

    Acts on the ``dual_state_`` of the net it is called with (it keeps no state itself). The
    net's ``get_loss`` adds the per-group loss sums of every constrained training batch to the
    state; this callback adds CEAG's accuracy drops to the replay buffer, turns them into the
    violations, updates the multipliers through
    :func:`~fairprune_sk.constrained._dual.dual_step` and records ``constraint_violation``,
    ``max_violation`` and ``multipliers`` in ``history`` every epoch. During the first
    ``kickin`` epochs of a run the multipliers take no step. At the end of every epoch it also
    checks that the weights are finite (:class:`~fairprune_sk.constrained.DivergenceError`
    otherwise).

    With ``dual_update=k``, batches are counted across epochs; a run with fewer than ``k``
    batches in all steps at the end of every epoch instead, with a warning.
    """

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        state = net.dual_state_
        state.start_run(net.replay_size, first_epoch=len(net.history))
        if not net._constraint_active():
            return
        per_epoch = _batches_per_epoch(net, X, y)
        epochs = getattr(net, "_run_epochs_", net.max_epochs)  # else a dense fit
        if net.dual_update_ != "epoch" and epochs * per_epoch < net.dual_update_:
            state.step_every_epoch = True
            warnings.warn(
                DUAL_UPDATE_TOO_RARE.format(
                    k=net.dual_update_, n=epochs * per_epoch, epochs=epochs, per_epoch=per_epoch
                ),
                UserWarning,
                stacklevel=2,
            )
        if net.average_tail_ and net.phase_ == "fine_tune":
            state.tail_average = TailAverage(epochs * per_epoch, net.average_tail_)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        state = net.dual_state_
        if state.tail_average is not None:  # the mean of the tail's iterates, then selection
            state.tail_average.finish(net.module_)
        if not (net.best_iterate and net._uses_heldout() and net._constraint_active()):
            return
        # the final weights compete too; then load the selected iterate's
        state.consider_iterate(*net._heldout_measure(state.heldout), net.tolerance_, net.module_)
        net.module_.load_state_dict(state.best_state)
        net.history.record("selected_iterate", state.best_iterate)
        net.history.record("iterates", state.iterates_seen)

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        net.dual_state_.start_epoch()

    def on_batch_end(
        self,
        net: Any,
        batch: Any = None,
        training: bool = False,
        y_pred: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        if not (training and net._constraint_active()):
            return
        state = net.dual_state_
        if net._ceag_on_training_batches() and y_pred is not None:
            Xi, yi = unpack_data(batch)  # CEAG's dual signal: this batch's accuracy drops
            if isinstance(Xi, Mapping) and REFERENCE_CORRECT_KEY in Xi:
                correct = as_numpy(y_pred.argmax(dim=1)) == as_numpy(yi)
                drops = as_numpy(Xi[REFERENCE_CORRECT_KEY]) - correct
                state.replay.push(as_numpy(Xi[GROUP_KEY]), drops)
        if state.tail_average is not None:
            state.tail_average.batch_end()
        if net.dual_update_ == "epoch" or state.step_every_epoch:
            return
        state.batches_since_update += 1
        if state.batches_since_update >= net.dual_update_:
            self._dual_step(net)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        net._check_finite_weights()
        state = net.dual_state_
        if not net._constraint_active():
            net.history.record("constraint_violation", None)
            net.history.record("max_violation", float("nan"))  # keeps PrintLog's columns aligned
            net.history.record("multipliers", state.multipliers.tolist())
            return
        if net.dual_update_ == "epoch" or state.step_every_epoch:
            self._dual_step(net)
        if state.epoch_violations:  # the mean of the epoch's dual steps (NaN counted as 0)
            violation = np.nan_to_num(np.vstack(state.epoch_violations)).mean(axis=0)
        else:
            violation = self._violation(net)
        net.history.record("constraint_violation", violation.tolist())
        finite = violation[~np.isnan(violation)]
        net.history.record("max_violation", float(finite.max()) if finite.size else 0.0)
        net.history.record("multipliers", state.multipliers.tolist())

    def _violation(self, net: Any) -> np.ndarray:
        """The constraint values for a dual step (NaN where a group has no estimate)."""
        state = net.dual_state_
        if net._ceag_on_training_batches():
            return state.replay_gap()
        if net._uses_heldout():
            violation, accuracy = net._heldout_measure(state.heldout)
            if net.best_iterate:
                state.consider_iterate(violation, accuracy, net.tolerance_, net.module_)
            return violation
        if net.constraint_target == "gradient_norm":
            return state.mean_accumulated()  # the batches' |‖∇J_a‖ − ‖∇J‖|
        return state.averaged_violation()

    def _dual_step(self, net: Any) -> None:
        """Measure the violation, record it for the epoch, step the multipliers, checkpoint."""
        state = net.dual_state_
        violation = self._violation(net)
        state.epoch_violations.append(violation)
        # the history row of this epoch already exists: it is epoch k of the run when
        # len(history) - first_epoch == k
        if len(net.history) - state.first_epoch > net.kickin:
            if net.noise_margin_ and net._ceag_on_training_batches():
                # the step acts on the lower confidence bound of ψ_a: ψ̂_a − z · SE(ψ̂_a)
                errors = np.nan_to_num(state.replay.standard_errors(), nan=0.0)
                violation = violation - net.noise_margin_ * errors
            damped = net.dual_dynamics_ == "damped"
            state.step(
                violation,
                lr=net.dual_lr_,
                tolerance=net.tolerance_,
                cap=net.multiplier_cap if damped else None,
                damping=net.dual_damping,
            )
            if net.loss_dual_lr_ and net._ceag_on_training_batches():
                state.step_loss(
                    state.signed_loss_gap(),
                    lr=net.loss_dual_lr_,
                    cap=net.multiplier_cap if damped else None,
                )
        state.reset_accumulators()
        if state.tail_average is not None:
            state.tail_average.checkpoint(net.module_)
