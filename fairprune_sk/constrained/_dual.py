"""The dual dynamics as pure functions: the dual step, the per-group replay buffer, ψ, and the
stratified held-out split (each tested on its own; :mod:`fairprune_sk.constrained._callback` drives them).

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

from typing import Any

import numpy as np
import torch

from .._validation import torch_seed

__all__ = [
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
        # a stable sort of 16-bit keys is a radix sort: the same order, several times faster
        self._sort_dtype = np.int16 if n_groups <= np.iinfo(np.int16).max else np.int64
        self._means: np.ndarray | None = None  # means() until the next push

    def push(self, codes: np.ndarray, values: np.ndarray) -> None:
        """Append ``values`` (in order) to the buffers of their groups ``codes``."""
        codes = np.asarray(codes, dtype=np.int64)
        if not codes.size:
            return
        order = np.argsort(codes.astype(self._sort_dtype), kind="stable")
        codes = codes[order]
        values = np.asarray(values, dtype=np.float64)[order]
        counts = np.bincount(codes, minlength=len(self.count))
        skipped = np.maximum(counts - self.size, 0)  # only the last `size` of a group survive
        # each value's rank among its group's surviving values (negative: it does not survive)
        rank = np.arange(len(codes)) - (np.cumsum(counts) - counts + skipped)[codes]
        keep = rank >= 0
        self.values[codes[keep], (self.position[codes] + rank)[keep] % self.size] = values[keep]
        self.position = (self.position + (counts - skipped)) % self.size
        self.count = np.minimum(self.count + counts, self.size)
        self._means = None

    def standard_errors(self) -> np.ndarray:
        """Standard error of each group's buffer mean (``s / √m``); NaN with fewer than 2 values."""
        filled = np.arange(self.size)[None, :] < self.count[:, None]  # slots written
        deviation = np.where(filled, self.values - self.means()[:, None], 0.0)
        squares = (deviation**2).sum(axis=1)
        defined = self.count > 1
        error = np.full(len(self.count), np.nan)  # variance / m, then its square root
        np.divide(squares, self.count - 1, out=error, where=defined)
        np.divide(error, self.count, out=error, where=defined)
        return np.sqrt(error, out=error, where=defined)

    def means(self) -> np.ndarray:
        """Mean of each group's buffer; NaN for a group with nothing pushed yet (read-only:
        computed once per push)."""
        if self._means is None:
            means = np.full(len(self.count), np.nan)
            np.divide(self.values.sum(axis=1), self.count, out=means, where=self.count > 0)
            means.flags.writeable = False
            self._means = means
        return self._means


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
