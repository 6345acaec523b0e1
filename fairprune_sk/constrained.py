"""FairConstrainedNet: prune without the disparity, by Lagrangian duality.

Three constraint targets share one loop (skorch's): the penalty lives in
:meth:`FairConstrainedNet.get_loss`, the dual step in the :class:`DualAscent` callback, which
owns the dual state (multipliers, replay buffer, PI memory) and records violations and
multipliers in ``history``.

``group_loss`` -- the paper's mitigation (Tran et al. 2022, eq. 8)::

    minimise_θ  J(θ; D)   subject to   |J(θ; D_a) − J(θ; D)| ≤ ε   for every group a,

with ε = ``tolerance`` (0: the paper's equalities, exactly as before ``tolerance`` existed),
solved as in Fioretto et al. by a primal SGD step on ``J(θ; B) + Σ_a λ_a |J(θ; B_a) − J(θ; B)|``
and dual ascent ``λ_a ← max(0, λ_a + dual_lr · (|J_a − J| − ε))``.

``excess_risk`` -- the same on the excess losses ``J(θ; ·) − J(θ*; ·)`` while fine-tuning.

``accuracy_gap`` -- CEAG (Hashemizadeh et al., ICLR 2024, *Balancing Act*): the excess
accuracy gap ``ψ_a = (acc_a(θ*) − acc_a(θ)) − (acc(θ*) − acc(θ)) ≤ ε`` for every group, while
fine-tuning the pruned net θ against its dense reference θ*.

- Primal step through the differentiable proxy
  ``(J(θ; B_a) − J(θ*; B_a)) − sg[J(θ; B) − J(θ*; B)]``, where ``sg`` is a stop-gradient: with
  the overall term inside the gradient the penalty rewards raising *everyone's* loss (a smaller
  ψ_a is also reached through a larger overall drop), which collapsed a prototype to 10 %
  accuracy on Fashion-MNIST at 95-99 % sparsity.
- Dual step on the true, accuracy-based ψ_a, estimated over a per-group replay buffer of the
  last ``replay_size`` predictions of the training batches (:class:`GroupReplayBuffer`), so a
  small group gets a stable estimate; the overall drop is the group drops weighted by the
  groups' training shares. A group not yet seen has no estimate and no dual step; a group
  absent from a batch adds nothing to that batch's penalty.
- With ``constraint_split`` the dual steps measure the constraints exactly, on a held-out,
  group × label stratified part of the training data (Cotter et al., ICML 2019) that the primal
  fine-tuning steps never see, and (``best_iterate=True``) the fine-tuned net keeps the iterate
  that is best on it: the most accurate one that meets every constraint, or while none does,
  the one closest to meeting them (Cotter et al.'s best-iterate rule). Measured
  (docs/mitigation.md, Fashion-MNIST): it cuts the test max ψ further than the training duals
  but costs more accuracy (the primal steps lose the held-out rows, and the rule prefers a
  low-ψ iterate to an accurate one), and at 99 % sparsity it selects degenerate iterates; so it
  is an option, not the default.

Dual dynamics (``dual_dynamics``): ``gradient`` is projected dual ascent on the Lagrangian
``J + Σ λ_a c_a`` (the paper's); ``damped`` (the default of ``accuracy_gap``) minimises the
normalised Lagrangian ``(J + Σ λ_a c_a) / (1 + Σ λ_a)``, so the primal step size does not grow
with the multipliers, caps every multiplier at ``multiplier_cap`` and optionally adds a
proportional term (a PI controller, nuPI with ν = 0, Sohrabi et al. 2024):
``λ ← clip(λ + dual_lr · (e_t + dual_damping · (e_t − e_{t−1})), 0, cap)``, ``e = violation − ε``.
A non-finite training loss or weight stops training with :class:`DivergenceError` (naming
``dual_lr``) and the estimator is restored to its state before the call.

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

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.callbacks import Callback
from skorch.utils import to_tensor

from ._validation import check_int, torch_seed
from .metrics import group_codes
from .nets import (
    INPUT_KEY,
    SAMPLE_WEIGHT_KEY,
    PrunableNetClassifier,
    TerminalPrintLog,
)

GROUP_KEY = "group"
REFERENCE_LOSS_KEY = "reference_loss"
REFERENCE_CORRECT_KEY = "reference_correct"
CONSTRAINT_PHASES = ("before", "after", "both", "none")
CONSTRAINT_TARGETS = ("group_loss", "excess_risk", "accuracy_gap")
DUAL_DYNAMICS = ("gradient", "damped")

#: What ``"auto"`` resolves to, per ``constraint_target``. The ``accuracy_gap`` values were chosen
#: by the study in docs/mitigation.md (benchmarks/bench_mitigation.py); the others are the
#: paper's formulation as it was before these parameters existed.
TARGET_DEFAULTS: dict[str, dict[str, Any]] = {
    "group_loss": {"dual_lr": 0.05, "tolerance": 0.0, "dual_update": "epoch",
                   "dual_dynamics": "gradient"},
    "excess_risk": {"dual_lr": 0.05, "tolerance": 0.0, "dual_update": "epoch",
                    "dual_dynamics": "gradient"},
    "accuracy_gap": {"dual_lr": 1.0, "tolerance": 0.0, "dual_update": 20,
                     "dual_dynamics": "damped"},
}
AUTO_PARAMS = ("dual_lr", "tolerance", "dual_update", "dual_dynamics")

MISSING_SENSITIVE_FEATURES = (
    "{name} with constraint_phase={phase!r} needs sensitive_features: call "
    "fit(X, y, sensitive_features=A); inside a Pipeline or GridSearchCV, enable metadata routing "
    "with sklearn.set_config(enable_metadata_routing=True) and pass sensitive_features=A to "
    "their fit (FairConstrainedNet requests it by default)"
)
DIVERGED = (
    "{name} diverged: {what} in epoch {epoch} ({phase}, multipliers {multipliers}). Lower "
    "dual_lr (got {dual_lr!r}) or lr (got {lr!r}), or use dual_dynamics='damped' (multipliers "
    "capped at multiplier_cap); the estimator was restored to its state before this call"
)
EMPTY_HELDOUT_GROUP = (
    "constraint_split={split!r} leaves group {group!r} ({n} training rows) with no held-out "
    "rows for the dual steps; raise constraint_split, merge small groups, or set "
    "constraint_split=None"
)


def _logits(module: torch.nn.Module, X: np.ndarray, device: Any) -> torch.Tensor:
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


# ----------------------------------------------------------------------------------------------
# building blocks (pure functions, tested on their own)
# ----------------------------------------------------------------------------------------------
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
        if not codes.size:
            return
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(codes, kind="stable")
        codes, values = codes[order], values[order]
        counts = np.bincount(codes, minlength=len(self.count))
        starts = np.cumsum(counts) - counts
        rank = np.arange(len(codes)) - starts[codes]
        overflow = np.maximum(counts - self.size, 0)[codes]  # only the last `size` survive
        keep = rank >= overflow
        slot = (self.position[codes] + rank - overflow)[keep] % self.size
        self.values[codes[keep], slot] = values[keep]
        written = np.minimum(counts, self.size)
        self.position = (self.position + written) % self.size
        self.count = np.minimum(self.count + counts, self.size)

    def means(self) -> np.ndarray:
        """Mean of each group's buffer; NaN for a group with nothing pushed yet."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.count > 0, self.values.sum(axis=1) / np.maximum(self.count, 1), np.nan
            )


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


# ----------------------------------------------------------------------------------------------
# the dual step as a callback
# ----------------------------------------------------------------------------------------------
class DualAscent(Callback):
    """Dual steps on the multipliers (every epoch or every ``k`` batches) and their record.

    The net accumulates what a constraint needs per training batch (detached per-group loss
    sums, or the accuracy drops of the replay buffer); this callback turns them into the
    violations, updates the multipliers through :func:`dual_step` and records
    ``constraint_violation``, ``max_violation`` and ``multipliers`` in ``history`` every epoch.
    Before epoch ``kickin`` the multipliers stay at zero. At the end of every epoch it also
    checks that the weights are finite (:class:`DivergenceError` otherwise).
    """

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        net._start_constrained_run()

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        net._restore_best_iterate()

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        net._reset_dual_accumulators()
        net._epoch_violation_sum = None
        net._epoch_violation_batches = 0

    def on_batch_end(
        self, net: Any, batch: Any = None, training: bool = False, **kwargs: Any
    ) -> None:
        if not training or not net._constraint_active():
            return
        if net.dual_update_ != "epoch":
            net._batches_since_update += 1
            if net._batches_since_update >= net.dual_update_:
                violation = net._current_violation()
                net._record_batch_violation(violation)
                self._step(net, violation)
                net._reset_dual_accumulators()

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        net._check_finite_weights()
        if not net._constraint_active():
            net.history.record("constraint_violation", None)
            net.history.record("max_violation", float("nan"))  # keeps PrintLog's columns aligned
            net.history.record("multipliers", net._multipliers.tolist())
            return
        if net.dual_update_ == "epoch":
            violation = net._current_violation()
            self._step(net, violation)
        else:
            violation = net._mean_batch_violation()
        net.history.record("constraint_violation", violation.tolist())
        finite = violation[~np.isnan(violation)]
        net.history.record("max_violation", float(finite.max()) if finite.size else 0.0)
        net.history.record("multipliers", net._multipliers.tolist())

    @staticmethod
    def _step(net: Any, violation: np.ndarray) -> None:
        if len(net.history) <= net.kickin:  # history row of this epoch already exists
            return
        damped = net.dual_dynamics_ == "damped"
        net._multipliers, net._previous_error = dual_step(
            net._multipliers,
            violation,
            net._previous_error,
            lr=net.dual_lr_,
            tolerance=net.tolerance_,
            cap=net.multiplier_cap if damped else None,
            damping=net.dual_damping,
        )


class FairConstrainedNet(PrunableNetClassifier):
    """A prunable net trained under per-group constraints by Lagrangian duality.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        As for :class:`~fairprune_sk.PrunableNetClassifier` (outputs logits).
    dual_lr : float >= 0 or "auto", default="auto"
        Step size of the dual steps on the multipliers. 0 trains exactly like
        :class:`~fairprune_sk.PrunableNetClassifier` (without ``constraint_split``). "auto":
        1.0 for ``accuracy_gap``, 0.05 otherwise (:data:`TARGET_DEFAULTS`; the study behind the
        ``accuracy_gap`` values is docs/mitigation.md).
    constraint_phase : {"before", "after", "both", "none"}, default="after"
        When the constraint is enforced: during dense training (the paper's *Fair Bf*), during
        fine-tuning of the pruned net (*Fair Aft*), both (*Fair Both*), or never. With
        ``pruning_rate=0`` any phase but "none" constrains the dense training.
    constraint_target : {"group_loss", "excess_risk", "accuracy_gap"}, default="group_loss"
        ``group_loss`` constrains group losses, ``|J(θ; D_a) − J(θ; D)| ≤ ε`` (the paper's eq. 8
        for ε = 0). ``excess_risk`` constrains what pruning costs each group while fine-tuning,
        ``|R(a) − R| ≤ ε`` with ``R(a) = J(θ; D_a) − J(θ*; D_a)``, using the per-sample losses of
        the dense net θ* computed once before pruning. ``accuracy_gap`` (CEAG, the recommended
        mitigation) constrains the excess accuracy gap ``ψ_a ≤ ε`` while fine-tuning (see the
        module docstring). The last two apply to fine-tuning only; dense training
        (``before``/``both``) constrains group losses.
    tolerance : float >= 0 or "auto", default="auto"
        ε of the inequality constraints, so multipliers shrink again once a constraint holds.
        "auto": 0 (for ``group_loss`` and ``excess_risk`` the paper's equalities; for
        ``accuracy_gap`` ψ_a ≤ 0, pushed as far as the dual dynamics allow).
    dual_update : "epoch", int >= 1 or "auto", default="auto"
        Dual step after every epoch, or every ``k`` training batches. "auto": every 20 batches
        for ``accuracy_gap``, every epoch otherwise.
    dual_dynamics : {"gradient", "damped"} or "auto", default="auto"
        ``gradient``: projected dual ascent on the Lagrangian ``J + Σ λ_a c_a``. ``damped``: the
        Lagrangian normalised by ``1 + Σ λ_a``, multipliers capped at ``multiplier_cap``.
        "auto": ``damped`` for ``accuracy_gap``, ``gradient`` otherwise.
    multiplier_cap : float > 0, default=1.0
        Upper bound of every multiplier under ``dual_dynamics="damped"``.
    dual_damping : float >= 0, default=0.0
        Proportional gain of the PI dual update (0: plain integral ascent).
    replay_size : int >= 1, default=256
        Predictions kept per group to estimate ψ_a for the dual steps of ``accuracy_gap``.
    constraint_split : float in (0, 1) or None, default=None
        Share of the training rows held out (stratified by group × label) on which the dual
        steps measure the constraints while fine-tuning; the primal fine-tuning steps train on
        the rest (Cotter et al. 2019). None: the duals use the training batches (a replay
        buffer for ``accuracy_gap``). Dense training always uses all rows.
    best_iterate : bool, default=True
        With ``constraint_split``: at the end of constrained fine-tuning, keep the iterate (among
        those at the dual steps and the final one) that is best on the held-out rows: the most
        accurate one that meets every constraint, or while none does, the one closest to
        meeting them (Cotter et al. 2019). Ignored without ``constraint_split``.
    kickin : int >= 0, default=0
        Number of epochs before the first dual update (the multipliers stay 0 until then).
    **kwargs
        Every :class:`~fairprune_sk.PrunableNetClassifier` and skorch parameter.

    Attributes
    ----------
    multipliers_ : pandas.Series
        One Lagrange multiplier per training group.
    groups_ : pandas.Index
        The training groups (a ``MultiIndex`` for several sensitive columns).
    dual_lr_, tolerance_, dual_update_, dual_dynamics_ :
        The values used (``"auto"`` resolved for the ``constraint_target``).

    Raises
    ------
    DivergenceError
        From ``fit`` / ``partial_fit`` when the loss or a weight becomes non-finite; the
        estimator is left as it was before the call.

    Examples
    --------
    >>> fair = FairConstrainedNet(MLP, max_epochs=10, pruning_rate=0.95, fine_tune_epochs=4,
    ...                           constraint_target="accuracy_gap")        # doctest: +SKIP
    >>> fair.fit(X, y, sensitive_features=A).multipliers_                  # doctest: +SKIP
    """

    __metadata_request__fit = {"sensitive_features": True}

    _parameter_constraints: dict = {
        **PrunableNetClassifier._parameter_constraints,
        "dual_lr": [StrOptions({"auto"}), Interval(Real, 0.0, None, closed="left")],
        "constraint_phase": [StrOptions(set(CONSTRAINT_PHASES))],
        "constraint_target": [StrOptions(set(CONSTRAINT_TARGETS))],
        "tolerance": [StrOptions({"auto"}), Interval(Real, 0.0, None, closed="left")],
        "dual_update": [StrOptions({"epoch", "auto"}), Interval(Integral, 1, None, closed="left")],
        "dual_dynamics": [StrOptions({"auto", *DUAL_DYNAMICS})],
        "multiplier_cap": [Interval(Real, 0.0, None, closed="neither")],
        "dual_damping": [Interval(Real, 0.0, None, closed="left")],
        "replay_size": [Interval(Integral, 1, None, closed="left")],
        "constraint_split": [None, Interval(Real, 0.0, 1.0, closed="neither")],
        "best_iterate": ["boolean"],
        "kickin": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        module: Any,
        *,
        dual_lr: float | str = "auto",
        constraint_phase: str = "after",
        constraint_target: str = "group_loss",
        tolerance: float | str = "auto",
        dual_update: str | int = "auto",
        dual_dynamics: str = "auto",
        multiplier_cap: float = 1.0,
        dual_damping: float = 0.0,
        replay_size: int = 256,
        constraint_split: float | None = None,
        best_iterate: bool = True,
        kickin: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, **kwargs)
        self.dual_lr = dual_lr
        self.constraint_phase = constraint_phase
        self.constraint_target = constraint_target
        self.tolerance = tolerance
        self.dual_update = dual_update
        self.dual_dynamics = dual_dynamics
        self.multiplier_cap = multiplier_cap
        self.dual_damping = dual_damping
        self.replay_size = replay_size
        self.constraint_split = constraint_split
        self.best_iterate = best_iterate
        self.kickin = kickin

    @property
    def _default_callbacks(self) -> list:
        callbacks = super()._default_callbacks[:-1]
        print_log = TerminalPrintLog(keys_ignored=["constraint_violation", "multipliers"])
        return callbacks + [("dual_ascent", DualAscent()), ("print_log", print_log)]

    def _validate_own_params(self) -> None:
        """Check the parameters, then resolve the ``"auto"`` ones into ``*_`` attributes."""
        super()._validate_own_params()
        defaults = TARGET_DEFAULTS[self.constraint_target]
        for name in AUTO_PARAMS:
            value = getattr(self, name)
            setattr(self, f"{name}_", defaults[name] if isinstance(value, str) and value == "auto"
                    else value)

    # ------------------------------------------------------------------------------------------
    # phases and multipliers
    # ------------------------------------------------------------------------------------------
    def _constraint_active(self) -> bool:
        phase = getattr(self, "_phase", "train")
        if self.constraint_phase == "none":
            return False
        if phase == "train":
            return self.constraint_phase in ("before", "both") or self.pruning_rate == 0
        return self.constraint_phase in ("after", "both")

    def _targets_accuracy_gap(self) -> bool:
        """CEAG acts while fine-tuning against a dense reference; dense training uses losses."""
        return self.constraint_target == "accuracy_gap" and getattr(self, "_phase", "") == (
            "fine_tune"
        )

    @property
    def multipliers_(self) -> pd.Series:
        """One Lagrange multiplier per training group."""
        self.check_is_fitted(["groups_"])
        return pd.Series(self._multipliers.copy(), index=self.groups_, name="multiplier")

    def _start_constrained_run(self) -> None:
        """A training run begins: fresh replay buffer and PI memory (multipliers carry on)."""
        n_groups = len(self.groups_)
        self._replay = GroupReplayBuffer(n_groups, self.replay_size)
        self._pending_drops: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._previous_error = np.zeros(n_groups)
        self._best_key = self._best_state = self._best_iterate = None
        self._iterates_seen = 0

    def _reset_dual_accumulators(self) -> None:
        self._dual_sums = None  # per group [Σ w·loss, Σ w] since the last dual step
        self._batches_since_update = 0

    def _accumulate_dual_sums(self, sums: torch.Tensor) -> None:
        sums = sums.double()
        self._dual_sums = sums if self._dual_sums is None else self._dual_sums + sums

    def _current_violation(self) -> np.ndarray:
        """The constraint values for a dual step (NaN where a group has no estimate)."""
        if self._uses_heldout():
            violation, accuracy = self._heldout_measure()
            self._consider_iterate(violation, accuracy)
            return violation
        if self._targets_accuracy_gap():
            self._flush_replay()
            return excess_accuracy_gap(self._replay.means(), self._group_shares)
        return self._averaged_violation()

    def _uses_heldout(self) -> bool:
        """Whether the dual steps measure the constraints on the ``constraint_split`` rows."""
        return getattr(self, "_heldout", None) is not None and self._phase == "fine_tune"

    def _flush_replay(self) -> None:
        """Push the accuracy drops of the batches since the last dual step, in order."""
        if not self._pending_drops:
            return
        codes = torch.cat([c for c, _ in self._pending_drops]).cpu().numpy()
        drops = torch.cat([d for _, d in self._pending_drops]).cpu().numpy()
        self._pending_drops = []
        self._replay.push(codes, drops)

    def _averaged_violation(self) -> np.ndarray:
        """``|J_a − J|`` over the accumulated batches; NaN for groups that were absent."""
        if self._dual_sums is None:
            return np.full(len(self.groups_), np.nan)
        loss_sum, weight_sum = self._dual_sums.cpu().numpy().T
        with np.errstate(invalid="ignore", divide="ignore"):
            group_loss = loss_sum / weight_sum
        overall = loss_sum.sum() / max(weight_sum.sum(), 1e-12)
        return np.abs(group_loss - overall)

    def _consider_iterate(self, violation: np.ndarray, accuracy: float) -> None:
        """Keep the weights if this iterate is the best on the held-out rows so far.

        Cotter et al.'s rule: among iterates meeting every constraint (``max violation ≤
        tolerance``) the most accurate; while none does, the one with the smallest excess.
        """
        if not self.best_iterate:
            return
        finite = violation[~np.isnan(violation)]
        excess = (float(finite.max()) if finite.size else 0.0) - self.tolerance_
        key = (excess > 0, excess if excess > 0 else -accuracy)
        self._iterates_seen += 1
        if self._best_key is None or key < self._best_key:
            self._best_key, self._best_iterate = key, self._iterates_seen
            self._best_state = {
                name: value.detach().clone() for name, value in self.module_.state_dict().items()
            }

    def _restore_best_iterate(self) -> None:
        """At the end of a held-out constrained run, load the selected iterate's weights."""
        if not (self.best_iterate and self._uses_heldout() and self._constraint_active()):
            return
        self._consider_iterate(*self._heldout_measure())  # the final weights compete too
        self.module_.load_state_dict(self._best_state)
        self.history.record("selected_iterate", self._best_iterate)
        self.history.record("iterates", self._iterates_seen)

    def _heldout_measure(self) -> tuple[np.ndarray, float]:
        """Constraint values and accuracy of the current net on the ``constraint_split`` rows."""
        held = self._heldout
        logits = _logits(self.module_, held[INPUT_KEY], self.device)
        y = torch.as_tensor(held["y"], device=logits.device)
        with torch.no_grad():
            losses = self.per_sample_loss(logits, y).double().cpu().numpy()
            correct = (logits.argmax(dim=1) == y).cpu().numpy().astype(np.float64)
        codes, n_groups = held[GROUP_KEY], len(self.groups_)
        counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
        if self.constraint_target == "accuracy_gap":
            drop = held[REFERENCE_CORRECT_KEY] - correct
            with np.errstate(invalid="ignore", divide="ignore"):
                group_drop = np.bincount(codes, weights=drop, minlength=n_groups) / counts
            return group_drop - drop.mean(), float(correct.mean())
        if self.constraint_target == "excess_risk":
            losses = losses - held[REFERENCE_LOSS_KEY]
        with np.errstate(invalid="ignore", divide="ignore"):
            group_loss = np.bincount(codes, weights=losses, minlength=n_groups) / counts
        return np.abs(group_loss - losses.mean()), float(correct.mean())

    def _record_batch_violation(self, violation: np.ndarray) -> None:
        filled = np.nan_to_num(violation, nan=0.0)
        if self._epoch_violation_sum is None:
            self._epoch_violation_sum = np.zeros_like(filled)
        self._epoch_violation_sum += filled
        self._epoch_violation_batches += 1

    def _mean_batch_violation(self) -> np.ndarray:
        if not self._epoch_violation_batches:
            return self._current_violation()
        return self._epoch_violation_sum / self._epoch_violation_batches

    # ------------------------------------------------------------------------------------------
    # divergence guard
    # ------------------------------------------------------------------------------------------
    def _diverged(self, what: str) -> DivergenceError:
        return DivergenceError(
            DIVERGED.format(
                name=type(self).__name__,
                what=what,
                epoch=len(self.history),
                phase=getattr(self, "_phase", "train"),
                multipliers=np.round(self._multipliers, 4).tolist(),
                dual_lr=self.dual_lr_,
                lr=self.lr,
            )
        )

    def _check_finite_weights(self) -> None:
        for name, param in self.module_.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise self._diverged(f"the weight {name} became non-finite")

    # ------------------------------------------------------------------------------------------
    # loss: J + Σ_a λ_a c_a(θ; B) on the batch (normalised by 1 + Σ λ when damped)
    # ------------------------------------------------------------------------------------------
    def get_loss(
        self, y_pred: torch.Tensor, y_true: Any, X: Any = None, training: bool = False
    ) -> torch.Tensor:
        """Mean (weighted) loss, plus the Lagrangian penalty while training a constrained phase."""
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not training:
            return loss
        if not bool(torch.isfinite(loss)):
            raise self._diverged(f"the training loss became {loss.item()}")
        if not (isinstance(X, Mapping) and GROUP_KEY in X and self._constraint_active()):
            return loss
        ceag = self._targets_accuracy_gap() and REFERENCE_CORRECT_KEY in X
        heldout = self._uses_heldout()
        needs_sums = not (ceag or heldout)  # the dual step averages this run's batch losses
        codes = to_tensor(X[GROUP_KEY], device=y_pred.device).long()
        if ceag and not heldout:  # dual signal: this batch's accuracy drops
            correct = y_pred.detach().argmax(dim=1) == to_tensor(y_true, device=y_pred.device)
            reference = to_tensor(X[REFERENCE_CORRECT_KEY], device=y_pred.device)
            self._pending_drops.append((codes, reference - correct.to(reference.dtype)))
        if not (needs_sums or bool((self._multipliers > 0).any())):
            return loss  # λ = 0 and nothing to accumulate: exactly the unconstrained loss
        if ceag:
            return self._ceag_lagrangian(y_pred, y_true, X, codes)
        multipliers = torch.as_tensor(self._multipliers, device=y_pred.device)
        losses = self.per_sample_loss(y_pred, y_true)
        weight = X.get(SAMPLE_WEIGHT_KEY)
        weight = (
            torch.ones_like(losses)
            if weight is None
            else to_tensor(weight, device=losses.device).to(losses.dtype)
        )
        reference = X.get(REFERENCE_LOSS_KEY)
        if reference is not None:  # excess targets: loss minus the dense net's loss
            losses = losses - to_tensor(reference, device=losses.device).to(losses.dtype)
        # one scatter for the whole batch: per group [Σ w·loss, Σ w]
        sums = losses.new_zeros(len(self.groups_), 2).index_add_(
            0, codes, torch.stack([losses * weight, weight], dim=1)
        )
        if needs_sums:
            self._accumulate_dual_sums(sums.detach())
        multipliers = multipliers.to(losses.dtype)
        group_weight = sums[:, 1]
        penalized = (multipliers > 0) & (group_weight > 0)  # absent groups contribute nothing
        if not bool(penalized.any()):
            return loss  # λ = 0 on every present group: exactly the unconstrained loss
        overall = sums[:, 0].sum() / group_weight.sum()
        group_value = sums[penalized, 0] / group_weight[penalized]
        constraint = (group_value - overall).abs()
        penalized_loss = loss + (multipliers[penalized] * constraint).sum()
        if self.dual_dynamics_ == "damped":
            return penalized_loss / (1.0 + multipliers.sum())
        return penalized_loss

    def _ceag_lagrangian(
        self, y_pred: torch.Tensor, y_true: Any, X: Mapping, codes: torch.Tensor
    ) -> torch.Tensor:
        """``(J + Σ_a λ_a [(J_a − J*_a) − sg(J − J*)]) / (1 + Σ λ)`` on the batch, up to constants.

        The dense net's losses ``J*_a`` and the stop-gradient overall term are constants for θ,
        so the Lagrangian's gradient is that of one weighted sum ``Σ_i c_i ℓ_i`` with detached
        coefficients ``c_i = (w_i / n + λ_a w_i / W_a) / (1 + Σ λ)`` (``a`` the sample's group,
        ``W_a`` its weight in the batch; absent groups contribute nothing). This is what is
        returned (and recorded as ``train_loss``): one autograd node per batch instead of a
        scatter per group keeps the epoch within 1.10× of plain fine-tuning. Without
        ``dual_dynamics="damped"`` the normaliser is 1.
        """
        losses = self.per_sample_loss(y_pred, y_true)
        with torch.no_grad():
            multipliers, norm = self._multiplier_tensor(losses)
            weight = X.get(SAMPLE_WEIGHT_KEY)
            n_groups = len(self.groups_)
            if weight is None:
                group_weight = torch.bincount(codes, minlength=n_groups).to(losses.dtype)
                coef = (multipliers / group_weight.clamp_min(1.0))[codes] + 1.0 / len(losses)
            else:
                weight = torch.as_tensor(weight, device=losses.device).to(losses.dtype)
                group_weight = torch.zeros(n_groups, dtype=losses.dtype, device=losses.device)
                group_weight.index_add_(0, codes, weight)
                scale = (multipliers / group_weight.clamp_min(1e-12))[codes] + 1.0 / len(losses)
                coef = scale * weight
        return (coef * losses).sum() / norm

    def _multiplier_tensor(self, like: torch.Tensor) -> tuple[torch.Tensor, float]:
        """λ as a tensor and the Lagrangian's normaliser, rebuilt only when λ changed."""
        cache = getattr(self, "_multiplier_cache", None)
        if cache is None or cache[0] is not self._multipliers or cache[1].device != like.device:
            tensor = torch.as_tensor(self._multipliers, device=like.device).to(like.dtype)
            damped = self.dual_dynamics_ == "damped"
            norm = 1.0 + float(self._multipliers.sum()) if damped else 1.0
            cache = self._multiplier_cache = (self._multipliers, tensor, norm)
        return cache[1], cache[2]

    # ------------------------------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------------------------------
    def fit(
        self, X: Any, y: Any, *, sensitive_features: Any = None, sample_weight: Any = None
    ) -> Self:
        """Train (constrained where ``constraint_phase`` says), prune and fine-tune.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.
        sensitive_features : array-like, Series or DataFrame of shape (n_samples,) or (n_samples, k)
            Group membership (several columns: intersectional groups). Required unless
            ``constraint_phase="none"``. Travels inside the dataset, so batches and the
            validation split slice it with X.
        sample_weight : array-like of shape (n_samples,), optional
            Per-sample loss weights, also used in the group losses (not in the accuracies of
            ``accuracy_gap``).

        Returns
        -------
        self

        Raises
        ------
        DivergenceError
            If the loss or a weight becomes non-finite (the estimator is left unchanged).
        ValueError
            If ``constraint_split`` leaves a group without held-out rows.
        """
        return self._fit(X, y, sensitive_features, sample_weight)

    def _fit(
        self, X: Any, y: Any, sensitive_features: Any, sample_weight: Any, classes: Any = None
    ) -> Self:
        self._validate_own_params()
        with self._transaction(in_place=self._trains_in_place()):
            X_arr, y_index, classes = self._validate_training_data(
                X, y, reset=True, classes=classes
            )
            weight = self._check_sample_weight(sample_weight, X_arr)
            if sensitive_features is None:
                if self.constraint_phase != "none":
                    raise ValueError(
                        MISSING_SENSITIVE_FEATURES.format(
                            name=type(self).__name__, phase=self.constraint_phase
                        )
                    )
                groups = group_codes(np.zeros(len(y_index), dtype=np.int64))
            else:
                groups = group_codes(sensitive_features, len(y_index))
            self.groups_ = groups.index
            self._multipliers = np.zeros(groups.n_groups)
            self._heldout = None
            self._start_constrained_run()
            self._reset_dual_accumulators()
            self._epoch_violation_sum, self._epoch_violation_batches = None, 0
            self._fit_validated(X_arr, y_index, classes, sample_weight=weight, group=groups.codes)
        return self

    def partial_fit(
        self,
        X: Any,
        y: Any,
        classes: Any = None,
        *,
        sensitive_features: Any = None,
        sample_weight: Any = None,
    ) -> Self:
        """Train ``max_epochs`` more epochs (masks held), constrained if the phase says so.

        On an unfitted net this is ``fit`` (with ``classes``, all the labels in any order).
        """
        if not self.initialized_:
            return self._fit(X, y, sensitive_features, sample_weight, classes=classes)
        self._validate_own_params()
        return self._continue_constrained(
            X, y, self.max_epochs, classes, sensitive_features, sample_weight
        )

    def fine_tune(
        self,
        X: Any,
        y: Any,
        epochs: int,
        *,
        sensitive_features: Any = None,
        sample_weight: Any = None,
    ) -> Self:
        """Train ``epochs`` more epochs with the masks held, constrained if the phase says so."""
        self.check_is_fitted()
        epochs = check_int(epochs, "epochs", 0)
        self._validate_own_params()
        return self._continue_constrained(X, y, epochs, None, sensitive_features, sample_weight)

    def pruned_copy(
        self,
        rate: float,
        method: str | None = None,
        *,
        X: Any = None,
        y: Any = None,
        fine_tune_epochs: int = 0,
        sensitive_features: Any = None,
        sample_weight: Any = None,
    ) -> Self:
        """A pruned (and optionally fine-tuned) copy; as the parent's, with ``sensitive_features``
        for constrained fine-tuning."""
        return self._pruned_copy(
            rate,
            method,
            X,
            y,
            fine_tune_epochs,
            {"sensitive_features": sensitive_features, "sample_weight": sample_weight},
        )

    def _continue_constrained(
        self,
        X: Any,
        y: Any,
        epochs: int,
        classes: Any,
        sensitive_features: Any,
        sample_weight: Any,
    ) -> Self:
        with self._transaction(in_place=True):
            X_arr, y_index, _ = self._validate_training_data(X, y, reset=False, classes=classes)
            weight = self._check_sample_weight(sample_weight, X_arr)
            phase = "fine_tune" if self.dense_state_dict_ is not None else "train"
            self._phase = phase
            codes = None
            if sensitive_features is not None:
                codes = self._encode_groups(sensitive_features, len(y_index))
            elif self._constraint_active():
                raise ValueError(
                    MISSING_SENSITIVE_FEATURES.format(
                        name=type(self).__name__, phase=self.constraint_phase
                    )
                )
            data = self._training_input(X_arr, sample_weight=weight, group=codes)
            self._heldout = None
            if phase == "fine_tune":
                data = self._fine_tuning_input(data, y_index)
            with self._seeded(offset=len(self.history)):
                self._train_epochs(data, y_index, epochs, phase=phase)
        return self

    def _fine_tuning_input(self, data: Any, y_index: np.ndarray) -> Any:
        """Add what the target needs from θ* and set the held-out rows of ``constraint_split``.

        ``excess_risk`` and ``accuracy_gap`` get the dense net's per-sample losses (and, for
        ``accuracy_gap``, whether θ* classified each sample correctly), computed once.
        """
        if not (isinstance(data, Mapping) and GROUP_KEY in data and self._constrains_fine_tuning()):
            return data
        codes = np.asarray(data[GROUP_KEY])
        shares = np.bincount(codes, minlength=len(self.groups_)).astype(np.float64)
        self._group_shares = shares / shares.sum()
        if self.constraint_target != "group_loss":
            losses, correct = self._reference_outputs(data[INPUT_KEY], y_index)
            data = {**data, REFERENCE_LOSS_KEY: losses}
            if self.constraint_target == "accuracy_gap":
                data[REFERENCE_CORRECT_KEY] = correct
        if self.constraint_split is not None:
            held = stratified_holdout(codes, y_index, self.constraint_split, self.random_state)
            empty = np.flatnonzero(np.bincount(codes[held], minlength=len(self.groups_)) == 0)
            if empty.size:
                group = self.groups_[empty[0]]
                raise ValueError(
                    EMPTY_HELDOUT_GROUP.format(
                        split=self.constraint_split,
                        group=group,
                        n=int((codes == empty[0]).sum()),
                    )
                )
            self._heldout = {key: np.asarray(value)[held] for key, value in data.items()}
            self._heldout["y"] = y_index[held]
            self._heldout_rows = held
        return data

    def _constrains_fine_tuning(self) -> bool:
        return self.constraint_phase in ("after", "both")

    def _train_epochs(self, data: Any, y_index: np.ndarray, epochs: int, phase: str) -> None:
        """As the parent, but constrained fine-tuning trains on the rows not held out."""
        if phase == "fine_tune" and getattr(self, "_heldout", None) is not None:
            keep = ~self._heldout_rows
            data = {key: np.asarray(value)[keep] for key, value in data.items()}
            y_index = y_index[keep]
        super()._train_epochs(data, y_index, epochs, phase)

    def _reference_outputs(
        self, X: np.ndarray, y_index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample loss of the dense net θ* and whether it is correct (eval mode, no grad)."""
        # θ* as a plain module, not a copy of the estimator
        module = self.module_ if self.dense_state_dict_ is None else self._dense_module()
        logits = _logits(module, X, self.device)  # no DataLoader: no RNG draws
        y = torch.as_tensor(y_index, device=logits.device)
        with torch.no_grad():
            losses = self.per_sample_loss(logits, y)
            correct = logits.argmax(dim=1) == y
        return (losses.cpu().numpy().astype(np.float32),
                correct.cpu().numpy().astype(np.float32))

    def _reference_losses(self, X: np.ndarray, y_index: np.ndarray) -> np.ndarray:
        """Per-sample loss of the dense net θ* (eval mode, no gradients)."""
        return self._reference_outputs(X, y_index)[0]

    def _encode_groups(self, sensitive_features: Any, n_samples: int) -> np.ndarray:
        """Codes of the training groups; unseen groups are an error for training."""
        groups = group_codes(sensitive_features, n_samples)
        positions = self.groups_.get_indexer(groups.index)
        if np.any(positions < 0):
            unseen = list(groups.index[positions < 0])
            raise ValueError(f"sensitive_features has groups not seen in fit: {unseen}")
        return positions[groups.codes].astype(np.int64)
