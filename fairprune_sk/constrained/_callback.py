"""The dual-ascent callback of :class:`~fairprune_sk.FairConstrainedNet` and the state it owns.

As skorch's ``EarlyStopping`` keeps ``misses_`` on itself, :class:`DualAscent` keeps the whole
dual state in one :class:`DualState` (``state_``): the multipliers, the PI memory, the replay
buffer, the loss sums since the last dual step, the held-out rows and the best iterate. The net
reads it through the callback (``multipliers_``, the penalty in ``get_loss``) and adds to it
what each training batch measures; the callback turns that into violations and dual steps.

CEAG's dual signal (``constraint_target="accuracy_gap"``):

- The dual step acts on the true, accuracy-based ψ_a, estimated over a per-group replay buffer
  of the last ``replay_size`` predictions of the training batches (:class:`GroupReplayBuffer`),
  so a small group gets a stable estimate; the overall drop is the group drops weighted by the
  groups' training shares. A group not yet seen has no estimate and no dual step.
- It acts on the lower confidence bound ``ψ̂_a − noise_margin · SE_a`` of the buffer estimate
  (one standard error by default): where ψ is at its noise level (Adult) the multipliers stay
  small and cost no accuracy; where a group clearly pays more (Fashion-MNIST's confusable
  classes) they act as before.
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

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from skorch.callbacks import Callback
from skorch.dataset import unpack_data

from ..nets._data import as_numpy
from ._constraints import GROUP_KEY, REFERENCE_CORRECT_KEY, numpy_dtype
from ._dual import GroupReplayBuffer, TailAverage, dual_step, excess_accuracy_gap

__all__ = ["DualAscent", "DualState"]

#: Training batches whose logits are kept before they are turned into accuracy drops.
_DROP_BLOCK = 64


def _concatenate(values: tuple[Any, ...]) -> np.ndarray:
    """The batches' tensors (one copy to the CPU) or arrays, concatenated as one ndarray."""
    if isinstance(values[0], torch.Tensor):  # the batches of one loader are all alike
        return as_numpy(torch.cat(values))
    if isinstance(values[0], np.ndarray):
        return np.concatenate(values)
    return np.concatenate([as_numpy(value) for value in values])


class DualState:
    """Everything the dual steps of one training set of groups remember.

    Parameters
    ----------
    groups : pandas.Index
        The training groups (``groups_`` of the net); a new ``fit`` has a new index, hence a
        new state with zero multipliers, while ``partial_fit`` / ``fine_tune`` carry on.

    Attributes
    ----------
    multipliers : ndarray of shape (n_groups,)
        The Lagrange multipliers λ (they carry on from one training run to the next).
    heldout : dict of str to ndarray or None
        The ``constraint_split`` rows (the net's training dict plus ``"y"``) of the current
        fine-tuning; None without a held-out split.

    Notes
    -----
    Methods replace the arrays and buffers they change instead of writing into them (a run
    starts with a new replay buffer and new accumulators), so :meth:`snapshot`, a shallow copy,
    is enough for ``fit`` / ``partial_fit`` to restore the state after a failed call.
    """

    def __init__(self, groups: pd.Index) -> None:
        self.groups = groups
        self.multipliers = np.zeros(len(groups))
        self._penalty: tuple | None = None  # penalty_multipliers' cache
        self.heldout: dict[str, np.ndarray] | None = None
        self.heldout_rows: np.ndarray | None = None
        self.group_shares: np.ndarray | None = None  # training shares, set for fine-tuning
        self.start_run(1)
        self.start_epoch()

    def snapshot(self) -> DualState:
        """A copy that later training does not change (see the class notes)."""
        return copy.copy(self)

    # -- runs, epochs, dual steps ----------------------------------------------------------------
    def start_run(self, replay_size: int) -> None:
        """A training run begins: fresh replay buffer, PI memory and best iterate."""
        n_groups = len(self.groups)
        self.replay = GroupReplayBuffer(n_groups, replay_size)
        self.pending_drops: list[tuple[np.ndarray, np.ndarray]] = []  # (codes, drops) blocks
        self.pending_batches: list[tuple[Any, Any, torch.Tensor, Any]] = []
        self.previous_error = np.zeros(n_groups)
        self.best_key: tuple | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_iterate: int | None = None
        self.iterates_seen = 0
        self.tail_average: TailAverage | None = None  # set by DualAscent for fine-tuning runs
        # what the dual steps of this run do, fixed for the run (DualAscent.on_train_begin)
        self.active = False  # the constraint acts
        self.collect_drops = False  # CEAG's dual steps read the training batches' drops
        self.reset_accumulators()

    def start_epoch(self) -> None:
        self.reset_accumulators()
        self.epoch_violation_sum: np.ndarray | None = None
        self.epoch_violation_batches = 0

    def reset_accumulators(self) -> None:
        """Forget the batches since the last dual step."""
        self.loss_sums: np.ndarray | None = None  # per group Σ w·loss, float64
        self.weight_sums: np.ndarray | None = None  # per group Σ w
        self.batches_since_update = 0

    def step(self, violation: np.ndarray, **step_params: Any) -> None:
        """A :func:`~fairprune_sk.constrained._dual.dual_step` on the multipliers (keywords passed on)."""
        self.multipliers, self.previous_error = dual_step(
            self.multipliers, violation, self.previous_error, **step_params
        )

    # -- what the batches measure ----------------------------------------------------------------
    def accumulate_sums(self, loss_sums: np.ndarray, weight_sums: np.ndarray) -> None:
        """Add a batch's per-group ``Σ w·loss`` and ``Σ w`` (float64, shape (n_groups,))."""
        if self.loss_sums is None:
            self.loss_sums, self.weight_sums = loss_sums, weight_sums
        else:
            self.loss_sums = self.loss_sums + loss_sums
            self.weight_sums = self.weight_sums + weight_sums

    def averaged_violation(self) -> np.ndarray:
        """``|J_a − J|`` over the accumulated batches; NaN for groups that were absent."""
        violation = np.full(len(self.groups), np.nan)
        if self.loss_sums is None:
            return violation
        loss_sum, weight_sum = self.loss_sums, self.weight_sums
        np.divide(loss_sum, weight_sum, out=violation, where=weight_sum != 0)
        overall = loss_sum.sum() / max(weight_sum.sum(), 1e-12)
        return np.abs(violation - overall)

    def add_batch(self, codes: Any, reference: Any, logits: torch.Tensor, y: Any) -> None:
        """Keep a training batch's group codes, θ*'s correctness, detached logits and labels
        until the next dual step turns them into accuracy drops (one ``argmax`` and one copy to
        the CPU per block of batches, not per batch)."""
        self.pending_batches.append((codes, reference, logits, y))
        if len(self.pending_batches) >= _DROP_BLOCK:  # memory bounded by a block of batches
            self._drops_of_pending_batches()

    def _drops_of_pending_batches(self) -> None:
        """Per-sample drops ``θ*'s correctness − θ's`` of the pending batches, in order."""
        batches, self.pending_batches = self.pending_batches, []
        if not batches:
            return
        codes, reference, logits, y = map(_concatenate, zip(*batches, strict=True))
        correct = logits.argmax(axis=1) == y
        codes = codes.astype(np.int64, copy=False)
        self.pending_drops.append((codes, reference - correct.astype(reference.dtype)))

    def replay_gap(self) -> np.ndarray:
        """ψ per group over the replay buffer, after pushing the pending drops in order."""
        self._drops_of_pending_batches()
        blocks, self.pending_drops = self.pending_drops, []
        if blocks:
            codes, drops = (np.concatenate(parts) for parts in zip(*blocks, strict=True))
            self.replay.push(codes, drops)
        return excess_accuracy_gap(self.replay.means(), self.group_shares)

    def replay_standard_errors(self) -> np.ndarray:
        """Standard error of every group's replay-buffer drop mean (0 where unknown)."""
        return np.nan_to_num(self.replay.standard_errors(), nan=0.0)

    def record_batch_violation(self, violation: np.ndarray) -> None:
        """Add a dual step's violation to the epoch's mean (NaN counted as 0)."""
        filled = np.where(np.isnan(violation), 0.0, violation)
        total = self.epoch_violation_sum
        self.epoch_violation_sum = filled if total is None else total + filled
        self.epoch_violation_batches += 1

    def mean_batch_violation(self) -> np.ndarray | None:
        """The mean of the epoch's recorded violations; None if there were none."""
        if not self.epoch_violation_batches:
            return None
        return self.epoch_violation_sum / self.epoch_violation_batches

    # -- best iterate (Cotter et al.) ------------------------------------------------------------
    def consider_iterate(
        self, violation: np.ndarray, accuracy: float, tolerance: float, module: torch.nn.Module
    ) -> None:
        """Keep ``module``'s weights if this iterate is the best on the held-out rows so far.

        Cotter et al.'s rule: among iterates meeting every constraint (``max violation ≤
        tolerance``) the most accurate; while none does, the one with the smallest excess.
        """
        finite = violation[~np.isnan(violation)]
        excess = (float(finite.max()) if finite.size else 0.0) - tolerance
        key = (excess > 0, excess if excess > 0 else -accuracy)
        self.iterates_seen += 1
        if self.best_key is None or key < self.best_key:
            self.best_key, self.best_iterate = key, self.iterates_seen
            self.best_state = {
                name: value.detach().clone() for name, value in module.state_dict().items()
            }

    # -- λ for the penalty -----------------------------------------------------------------------
    def penalty_multipliers(
        self, dtype: torch.dtype, damped: bool
    ) -> tuple[np.ndarray, np.generic | None, dict[int, np.ndarray]] | None:
        """What the batch penalty needs of λ, computed once per dual step, not per batch.

        λ as the numpy dtype of the losses' ``dtype``; the reciprocal of the Lagrangian's
        normaliser, ``1 / (1 + Σ λ)`` rounded as torch's division of ``1`` by the normaliser in
        ``dtype`` rounds it, None unless ``damped``; and an empty dict for the penalty's tables.
        None when every λ is 0.
        """
        multipliers, cached = self.multipliers, self._penalty
        if (cached is None or cached[0] is not multipliers or cached[1] is not dtype
                or cached[2] is not damped):
            value = None
            if bool((multipliers > 0).any()):
                kind = numpy_dtype(dtype)
                scale = None
                if damped:  # the normaliser in dtype, then its reciprocal in dtype
                    scale = kind.type(1.0) / kind.type(1.0 + float(multipliers.sum()))
                value = (multipliers.astype(kind), scale, {})
            cached = self._penalty = (multipliers, dtype, damped, value)
        return cached[3]


class DualAscent(Callback):
    """Dual steps on the multipliers (every epoch or every ``k`` batches) and their record.

    Owns the :class:`DualState` (``state_``) of its net. The net adds what a constraint needs
    per training batch (detached per-group loss sums, or the accuracy drops for the replay
    buffer); this callback turns them into the violations, updates the multipliers through
    :func:`~fairprune_sk.constrained._dual.dual_step` and records ``constraint_violation``,
    ``max_violation`` and ``multipliers`` in ``history`` every epoch. Before epoch ``kickin``
    the multipliers stay at zero. At the end of every epoch it also checks that the weights are
    finite (:class:`~fairprune_sk.constrained.DivergenceError` otherwise).

    Attributes
    ----------
    state_ : DualState or None
        None until the first training run of the net.
    """

    def initialize(self) -> DualAscent:
        self.state_: DualState | None = None
        self.run_epochs = 1  # epochs of the coming run (set by the net before it starts)
        return self

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        state = getattr(self, "state_", None)
        if state is None or state.groups is not net.groups_:  # a new fit: λ = 0
            state = self.state_ = DualState(net.groups_)
        state.start_run(net.replay_size)
        state.active = net._constraint_active()
        state.collect_drops = state.active and net._targets_accuracy_gap() and not (
            net._uses_heldout()
        )
        if net.average_tail_ and net.phase_ == "fine_tune" and state.active:
            n_rows = 0 if y is None else len(y)
            batch_size = net.batch_size if net.batch_size > 0 else max(n_rows, 1)
            n_batches = self.run_epochs * int(np.ceil(n_rows / batch_size))
            state.tail_average = TailAverage(n_batches, net.average_tail_)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        state = self.state_
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
        self.state_.start_epoch()

    def on_batch_end(
        self,
        net: Any,
        batch: Any = None,
        training: bool = False,
        y_pred: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        state = self.state_
        if not (training and state.active):
            return
        if state.collect_drops and y_pred is not None:
            Xi, yi = unpack_data(batch)  # CEAG's dual signal: this batch's accuracy drops
            if isinstance(Xi, Mapping) and REFERENCE_CORRECT_KEY in Xi:
                state.add_batch(Xi[GROUP_KEY], Xi[REFERENCE_CORRECT_KEY], y_pred.detach(), yi)
        if state.tail_average is not None:
            state.tail_average.batch_end()
        if net.dual_update_ == "epoch":
            return
        state.batches_since_update += 1
        if state.batches_since_update >= net.dual_update_:
            violation = self._violation(net)
            state.record_batch_violation(violation)
            self._step(net, violation)
            state.reset_accumulators()
            if state.tail_average is not None:
                state.tail_average.checkpoint(net.module_)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        net._check_finite_weights()
        state = self.state_
        if not net._constraint_active():
            net.history.record("constraint_violation", None)
            net.history.record("max_violation", float("nan"))  # keeps PrintLog's columns aligned
            net.history.record("multipliers", state.multipliers.tolist())
            return
        if net.dual_update_ == "epoch":
            violation = self._violation(net)
            self._step(net, violation)
            if state.tail_average is not None:
                state.tail_average.checkpoint(net.module_)
        else:
            violation = state.mean_batch_violation()
            if violation is None:
                violation = self._violation(net)
        net.history.record("constraint_violation", violation.tolist())
        finite = violation[~np.isnan(violation)]
        net.history.record("max_violation", float(finite.max()) if finite.size else 0.0)
        net.history.record("multipliers", state.multipliers.tolist())

    def _violation(self, net: Any) -> np.ndarray:
        """The constraint values for a dual step (NaN where a group has no estimate)."""
        state = self.state_
        if state.collect_drops:  # CEAG on the training batches
            return state.replay_gap()
        if net._uses_heldout():
            violation, accuracy = net._heldout_measure(state.heldout)
            if net.best_iterate:
                state.consider_iterate(violation, accuracy, net.tolerance_, net.module_)
            return violation
        return state.averaged_violation()

    def _step(self, net: Any, violation: np.ndarray) -> None:
        if len(net.history) <= net.kickin:  # history row of this epoch already exists
            return
        state = self.state_
        damped = net.dual_dynamics_ == "damped"
        if net.noise_margin_ and state.collect_drops:
            # the step acts on the lower confidence bound of ψ_a: ψ̂_a − z · SE(ψ̂_a)
            violation = violation - net.noise_margin_ * state.replay_standard_errors()
        state.step(
            violation,
            lr=net.dual_lr_,
            tolerance=net.tolerance_,
            cap=net.multiplier_cap if damped else None,
            damping=net.dual_damping,
        )
