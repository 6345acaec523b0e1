"""The dual dynamics: the dual step, the per-group replay buffer, ψ, the stratified held-out
split, tail averaging, and :class:`DualState`, the memory of the dual steps that a
:class:`~fairprune_sk.FairConstrainedNet` owns as its fitted attribute ``dual_state_``
(:class:`~fairprune_sk.constrained.DualAscent` drives them).

Dual dynamics (``dual_dynamics``): ``gradient`` is projected dual ascent on the Lagrangian
``J + Σ λ_a c_a`` (the paper's); ``damped`` (the default of ``accuracy_gap``) minimises the
normalised Lagrangian ``(J + Σ λ_a c_a) / (1 + Σ λ_a)``, so the primal step size does not grow
with the multipliers, caps every multiplier at ``multiplier_cap`` and optionally adds a
proportional term (a PI controller, nuPI with ν = 0, Sohrabi et al. 2024):
``λ ← clip(λ + dual_lr · (e_t + dual_damping · (e_t − e_{t−1})), 0, cap)``, ``e = violation − ε``.

Why not ``cooper-optim`` (1.0.1, MIT): its ``ConstrainedOptimizer.roll()`` owns the whole
step (``zero_grad``, the forward pass through ``compute_cmp_state``, ``backward`` and the primal
optimizer's ``step``), which is exactly what skorch's ``train_step`` owns; using it means
replacing skorch's loop (and its callbacks, gradient accumulation, ``device`` handling) or
calling cooper's internals. Its dual optimizers step on the gradient of the Lagrangian of the
current batch, whereas here the dual signal is a non-differentiable accuracy measured over a
replay buffer or a held-out split every k batches, and the normalisation by ``(1 + Σ λ)`` is not
one of its formulations. What it would bring (projected ascent, a cap, nuPI) is a few lines in
:func:`dual_step`, so the dependency does not pay for itself.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._validation import torch_seed

__all__ = [
    "DualState",
    "GroupReplayBuffer",
    "TailAverage",
    "dual_step",
    "excess_accuracy_gap",
    "stratified_holdout",
]


def dual_step(
    multipliers: np.ndarray,
    violation: np.ndarray,
    previous_error: np.ndarray,
    *,
    lr: float,
    tolerance: float = 0.0,
    cap: float | None = None,
    damping: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One projected PI dual step on the inequality constraints ``violation ≤ tolerance``.

    ``λ ← clip(λ + lr · (e + damping · (e − e_prev)), 0, cap)`` with ``e = violation − tolerance``;
    ``damping=0`` and ``cap=None`` is plain projected dual ascent. Groups whose violation is NaN
    (no estimate) keep their multiplier and their previous error.

    Parameters
    ----------
    multipliers : ndarray of shape (n_groups,)
        Current multipliers λ (not modified).
    violation : ndarray of shape (n_groups,)
        Measured constraint values; NaN where a group has no estimate.
    previous_error : ndarray of shape (n_groups,)
        ``e`` of the previous step (zeros before the first).
    lr : float
        Dual step size (``dual_lr``).
    tolerance : float, default=0.0
        ε of the constraints.
    cap : float or None, default=None
        Upper bound of every multiplier; None: unbounded.
    damping : float, default=0.0
        Proportional gain of the PI controller.

    Returns
    -------
    multipliers, error : ndarray of shape (n_groups,)
        The new multipliers and the error to pass as ``previous_error`` next time.
    """
    seen = ~np.isnan(violation)
    error = np.asarray(previous_error, dtype=np.float64).copy()
    updated = np.asarray(multipliers, dtype=np.float64).copy()
    e = violation[seen] - tolerance
    step = updated[seen] + lr * (e + damping * (e - error[seen]))
    updated[seen] = np.clip(step, 0.0, np.inf if cap is None else cap)
    error[seen] = e
    return updated, error


class GroupReplayBuffer:
    """The last ``size`` values pushed for every group (a ring buffer per group).

    Parameters
    ----------
    n_groups : int
        Number of groups (codes ``0 .. n_groups - 1``).
    size : int
        Values kept per group.

    Examples
    --------
    >>> buffer = GroupReplayBuffer(2, size=2)
    >>> buffer.push(np.array([0, 0, 0, 1]), np.array([1.0, 2.0, 3.0, 5.0]))
    >>> buffer.means()
    array([2.5, 5. ])
    """

    def __init__(self, n_groups: int, size: int) -> None:
        self.size = int(size)
        self.values = np.zeros((n_groups, self.size))
        self.count = np.zeros(n_groups, dtype=np.int64)
        self.position = np.zeros(n_groups, dtype=np.int64)  # next slot to write

    def push(self, codes: np.ndarray, values: np.ndarray) -> None:
        """Append ``values`` (in order) to the buffers of their groups ``codes``."""
        codes = np.asarray(codes, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        for group in np.unique(codes):
            new = values[codes == group][-self.size:]  # only the last `size` survive
            slots = (self.position[group] + np.arange(len(new))) % self.size
            self.values[group, slots] = new
            self.position[group] = (self.position[group] + len(new)) % self.size
            self.count[group] = min(self.count[group] + len(new), self.size)

    def means(self) -> np.ndarray:
        """Mean of each group's buffer; NaN for a group with nothing pushed yet."""
        means = np.full(len(self.count), np.nan)
        np.divide(self.values.sum(axis=1), self.count, out=means, where=self.count > 0)
        return means

    def standard_errors(self) -> np.ndarray:
        """Standard error of each group's buffer mean (``s / √m``); NaN with fewer than 2 values."""
        errors = np.full(len(self.count), np.nan)
        for group in np.flatnonzero(self.count > 1):
            values = self.values[group, : self.count[group]]
            errors[group] = values.std(ddof=1) / np.sqrt(len(values))
        return errors


def excess_accuracy_gap(drop: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """ψ_g = drop_g − Σ_h share_h · drop_h, over the groups with an estimate.

    Parameters
    ----------
    drop : ndarray of shape (n_groups,)
        Accuracy drop ``acc_g(θ*) − acc_g(θ)`` per group; NaN where unknown.
    shares : ndarray of shape (n_groups,)
        Each group's share of the data, renormalised over the groups with an estimate.

    Returns
    -------
    ndarray of shape (n_groups,)
        ψ per group (NaN where ``drop`` is NaN).
    """
    seen = ~np.isnan(drop)
    if not seen.any():
        return drop.copy()
    weights = shares[seen] / shares[seen].sum()
    return drop - float(weights @ drop[seen])


def stratified_holdout(
    groups: np.ndarray, y: np.ndarray, fraction: float, random_state: Any = None
) -> np.ndarray:
    """A held-out mask with ``round(fraction · n)`` rows of every group × label stratum.

    Parameters
    ----------
    groups, y : ndarray of shape (n_samples,)
        Integer group codes and encoded labels.
    fraction : float in (0, 1)
        Share of each stratum held out.
    random_state : int, RandomState or None
        Which rows of a stratum are held out.

    Returns
    -------
    ndarray of bool, shape (n_samples,)
        True for held-out rows.
    """
    strata = np.unique(np.stack([groups, y], axis=1), axis=0, return_inverse=True)[1].ravel()
    rng = np.random.default_rng(torch_seed(random_state))
    order = rng.permutation(len(strata))
    order = order[np.argsort(strata[order], kind="stable")]
    counts = np.bincount(strata)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(strata), dtype=np.int64)
    rank[order] = np.arange(len(strata)) - starts[strata[order]]
    n_held = np.floor(fraction * counts + 0.5).astype(np.int64)
    return rank < n_held[strata]


class TailAverage:
    """The running mean of the iterates of the last part of a training run (tail averaging).

    The last iterate of a Lagrangian game oscillates around its solution; the average of the
    iterates settles (the usual guarantee of primal-dual methods, and what Cotter et al., ALT
    2019, analyse). :meth:`checkpoint` adds the module's weights once the run is past its first
    ``1 − tail`` share of batches; :meth:`finish` adds the final iterate (unless it was just
    checkpointed) and loads the mean into the module. Masked weights stay zero: the masks are
    fixed while fine-tuning, so the mean of masked weights is masked.

    Parameters
    ----------
    n_batches : int
        Training batches planned in the run.
    tail : float in [0, 1)
        Share of the last batches whose iterates are averaged.

    Examples
    --------
    >>> module = torch.nn.Linear(1, 1, bias=False)
    >>> average = TailAverage(n_batches=4, tail=0.5)     # averages from batch 3 on
    >>> for value in (1.0, 2.0, 3.0, 4.0):
    ...     _ = module.weight.data.fill_(value)
    ...     average.batch_end()
    ...     average.checkpoint(module)
    >>> average.finish(module)
    >>> module.weight.item()
    3.5
    """

    def __init__(self, n_batches: int, tail: float) -> None:
        self.start = int(np.floor((1.0 - tail) * n_batches))
        self.seen = 0  # training batches so far
        self.count = 0  # iterates summed
        self.fresh = False  # an iterate was summed since the last batch
        self.sums: dict[str, torch.Tensor] | None = None

    def batch_end(self) -> None:
        """One more training batch."""
        self.seen += 1
        self.fresh = False

    def checkpoint(self, module: torch.nn.Module) -> None:
        """Add the current weights if the run is in its tail."""
        if self.seen <= self.start:
            return
        with torch.no_grad():
            if self.sums is None:
                self.sums = {
                    name: param.detach().double().clone()
                    for name, param in module.named_parameters()
                }
            else:
                for name, param in module.named_parameters():
                    self.sums[name] += param.detach().double()
        self.count += 1
        self.fresh = True

    def finish(self, module: torch.nn.Module) -> None:
        """Add the final iterate and load the mean into ``module``."""
        if not self.fresh:
            self.checkpoint(module)
        if not self.count:
            return
        with torch.no_grad():
            for name, param in module.named_parameters():
                param.copy_(self.sums[name] / self.count)


class DualState:
    """What the dual steps of one training set of groups remember: a fitted attribute of its net.

    A :class:`~fairprune_sk.FairConstrainedNet` keeps it as ``dual_state_``; its copies
    (``pruned_copy``, ``dense_reference``, ``copy.deepcopy``, pickling) carry a copy of their
    own (:meth:`copy`), and its transactions restore it after a failed call.

    Parameters
    ----------
    groups : pandas.Index
        The training groups (``groups_`` of the net); a new ``fit`` has a new state with zero
        multipliers, while ``partial_fit`` / ``fine_tune`` carry on.

    Attributes
    ----------
    multipliers : ndarray of shape (n_groups,)
        The Lagrange multipliers λ (they carry on from one training run to the next).
    previous_error : ndarray of shape (n_groups,)
        The error of the last dual step (the PI term's memory).
    batches_since_update : int
        Training batches since the last dual step, counted across epochs.
    heldout : dict of str to ndarray or None
        The ``constraint_split`` rows (the net's training dict plus ``"y"``) of the current
        fine-tuning; None without a held-out split.
    """

    def __init__(self, groups: pd.Index) -> None:
        self.groups = groups
        self.multipliers = np.zeros(len(groups))
        self.previous_error = np.zeros(len(groups))
        self.loss_multipliers = np.zeros(len(groups))  # ν of the equal-loss constraints
        self.loss_previous_error = np.zeros(len(groups))
        self.heldout: dict[str, np.ndarray] | None = None
        self.heldout_rows: np.ndarray | None = None
        self.group_shares: np.ndarray | None = None  # training shares, set for fine-tuning
        self.start_run(replay_size=1)

    def copy(self) -> DualState:
        """An independent copy (the held-out rows, never written to, are shared)."""
        heldout, self.heldout = self.heldout, None
        try:
            state = copy.deepcopy(self)
        finally:
            self.heldout = heldout
        state.heldout = heldout
        return state

    def start_run(self, replay_size: int, first_epoch: int = 0) -> None:
        """A training run begins: fresh replay buffer, accumulators, epoch record and best
        iterate (the multipliers and the PI memory carry on). ``first_epoch`` is the length of
        the net's history before the run, from which ``kickin`` counts the run's epochs."""
        self.first_epoch = first_epoch
        self.replay = GroupReplayBuffer(len(self.groups), replay_size)
        self.best_key: tuple | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_iterate: int | None = None
        self.iterates_seen = 0
        self.tail_average: TailAverage | None = None
        self.step_every_epoch = False
        self.reset_accumulators()
        self.start_epoch()

    def start_epoch(self) -> None:
        """Forget the epoch's recorded violations (the batch counter carries on)."""
        self.epoch_violations: list[np.ndarray] = []

    def reset_accumulators(self) -> None:
        """Forget the batches since the last dual step."""
        self.loss_sums = np.zeros(len(self.groups))  # per group Σ w·loss
        self.weight_sums = np.zeros(len(self.groups))  # per group Σ w
        self.batches_since_update = 0

    def accumulate(self, loss_sums: np.ndarray, weight_sums: np.ndarray) -> None:
        """Add a batch's per-group ``Σ w·loss`` and ``Σ w``."""
        self.loss_sums = self.loss_sums + loss_sums
        self.weight_sums = self.weight_sums + weight_sums

    def averaged_violation(self) -> np.ndarray:
        """``|J_a − J|`` over the accumulated batches; NaN for groups that were absent."""
        means = np.full(len(self.groups), np.nan)
        np.divide(self.loss_sums, self.weight_sums, out=means, where=self.weight_sums > 0)
        overall = self.loss_sums.sum() / max(self.weight_sums.sum(), 1e-12)
        return np.abs(means - overall)

    def mean_accumulated(self) -> np.ndarray:
        """The mean of the accumulated per-group values (NaN for groups never present)."""
        means = np.full(len(self.groups), np.nan)
        np.divide(self.loss_sums, self.weight_sums, out=means, where=self.weight_sums > 0)
        return means

    def signed_loss_gap(self) -> np.ndarray:
        """``J_a − J`` over the accumulated batches; NaN for groups that were absent."""
        means = np.full(len(self.groups), np.nan)
        np.divide(self.loss_sums, self.weight_sums, out=means, where=self.weight_sums > 0)
        return means - self.loss_sums.sum() / max(self.weight_sums.sum(), 1e-12)

    def step_loss(self, violation: np.ndarray, **step_params: Any) -> None:
        """A :func:`dual_step` on the equal-loss multipliers ν (keywords passed on)."""
        self.loss_multipliers, self.loss_previous_error = dual_step(
            self.loss_multipliers, violation, self.loss_previous_error, **step_params
        )

    def replay_gap(self) -> np.ndarray:
        """ψ per group over the replay buffer (NaN for a group not seen yet)."""
        return excess_accuracy_gap(self.replay.means(), self.group_shares)

    def step(self, violation: np.ndarray, **step_params: Any) -> None:
        """A :func:`dual_step` on the multipliers (keywords passed on)."""
        self.multipliers, self.previous_error = dual_step(
            self.multipliers, violation, self.previous_error, **step_params
        )

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
