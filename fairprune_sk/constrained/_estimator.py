"""FairConstrainedNet: prune without the disparity, by Lagrangian duality.

Three constraint targets, each a per-group inequality ``c_a(θ) ≤ ε`` (ε = ``tolerance``; 0 gives
the paper's equalities), share one loop (skorch's): the penalty lives in
:meth:`FairConstrainedNet.get_loss`, the dual step in the :class:`DualAscent` callback, which
records violations and multipliers in ``history``; the dual state (multipliers, replay buffer,
PI memory) is the net's fitted attribute ``dual_state_``.

- ``group_loss``, the paper's mitigation (Tran et al. 2022, eq. 8):
  ``|J(θ; D_a) − J(θ; D)| ≤ ε``, solved as in Fioretto et al. by primal SGD steps on
  ``J(θ; B) + Σ_a λ_a |J(θ; B_a) − J(θ; B)|`` and dual ascent
  ``λ_a ← max(0, λ_a + dual_lr · (|J_a − J| − ε))``.
- ``excess_risk``: the same on the excess losses ``J(θ; ·) − J(θ*; ·)`` while fine-tuning.
- ``accuracy_gap``, CEAG (Hashemizadeh et al., ICLR 2024, *Balancing Act*): the excess accuracy
  gap ``ψ_a = (acc_a(θ*) − acc_a(θ)) − (acc(θ*) − acc(θ)) ≤ ε`` while fine-tuning the pruned
  net θ against its dense reference θ*.

The batch Lagrangian of each target is one function in :mod:`._lagrangian`; the dual
dynamics (``gradient`` / ``damped``, the PI term, the replay buffer, tail averaging) are pure
functions and a state container in :mod:`._dual`, kept by the net as its fitted attribute
``dual_state_``; the :class:`DualAscent` callback takes the dual steps. A non-finite training
loss or weight stops training with :class:`DivergenceError` (naming ``dual_lr``) and the
estimator is restored to its state before the call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.utils import to_tensor

from .._validation import check_int
from ..metrics import group_codes
from ..metrics._stream import is_stream, sensitive_fields
from ..nets import PrunableNetClassifier, TerminalPrintLog
from ..nets._data import INPUT_KEY, SAMPLE_WEIGHT_KEY
from ..nets._stream import NetStream
from ._callback import DualAscent
from ._constraints import (
    DIVERGED,
    EMPTY_HELDOUT_GROUP,
    GROUP_KEY,
    REFERENCE_CORRECT_KEY,
    REFERENCE_LOSS_KEY,
    DivergenceError,
    eval_logits,
)
from ._dual import DualState, stratified_holdout
from ._lagrangian import (
    ceag_lagrangian,
    gradient_norm_lagrangian,
    group_loss_lagrangian,
    group_sums,
)

__all__ = [
    "CONSTRAINT_PHASES",
    "CONSTRAINT_TARGETS",
    "DUAL_DYNAMICS",
    "MISSING_SENSITIVE_FEATURES",
    "TARGET_DEFAULTS",
    "FairConstrainedNet",
]

CONSTRAINT_PHASES = ("before", "after", "both", "none")
CONSTRAINT_TARGETS = (
    "group_loss", "excess_risk", "accuracy_gap", "gap_and_loss", "gradient_norm"
)
#: The targets that constrain ψ_a (CEAG's dual signal and primal proxy).
PSI_TARGETS = ("accuracy_gap", "gap_and_loss")
DUAL_DYNAMICS = ("gradient", "damped")

#: What ``"auto"`` resolves to, per ``constraint_target``. The ``accuracy_gap`` values were chosen
#: by the study in docs/mitigation.md (benchmarks/bench_mitigation.py); the others are the
#: paper's formulation.
TARGET_DEFAULTS: dict[str, dict[str, Any]] = {
    "group_loss": {"dual_lr": 0.05, "tolerance": 0.0, "dual_update": "epoch",
                   "dual_dynamics": "gradient"},
    "gradient_norm": {"dual_lr": 0.05, "tolerance": 0.0, "dual_update": "epoch",
                      "dual_dynamics": "gradient"},
    "excess_risk": {"dual_lr": 0.05, "tolerance": 0.0, "dual_update": "epoch",
                    "dual_dynamics": "gradient"},
    "accuracy_gap": {"dual_lr": 1.0, "tolerance": 0.0, "dual_update": 20,
                     "dual_dynamics": "damped", "noise_margin": 1.0, "average_tail": 0.25},
    "gap_and_loss": {"dual_lr": 1.0, "tolerance": 0.0, "dual_update": 20,
                     "dual_dynamics": "damped", "noise_margin": 0.0, "average_tail": 0.25,
                     "loss_dual_lr": 0.05},
}
for _defaults in TARGET_DEFAULTS.values():  # the paper's targets: no margin, last iterate
    _defaults.setdefault("noise_margin", 0.0)
    _defaults.setdefault("average_tail", 0.0)
    _defaults.setdefault("loss_dual_lr", 0.0)
AUTO_PARAMS = ("dual_lr", "tolerance", "dual_update", "dual_dynamics", "noise_margin",
               "average_tail", "loss_dual_lr")

MISSING_SENSITIVE_FEATURES = (
    "{name} with constraint_phase={phase!r} needs sensitive_features: call "
    "fit(X, y, sensitive_features=A); inside a Pipeline or GridSearchCV, enable metadata routing "
    "with sklearn.set_config(enable_metadata_routing=True) and pass sensitive_features=A to "
    "their fit (FairConstrainedNet requests it by default)"
)


class FairConstrainedNet(PrunableNetClassifier):
    """A prunable net trained under per-group constraints by Lagrangian duality.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        As for :class:`~fairprune_sk.PrunableNetClassifier` (outputs logits).
    dual_lr : float >= 0 or "auto", default="auto"
        Step size of the dual steps on the multipliers. 0 trains exactly like
        :class:`~fairprune_sk.PrunableNetClassifier` (with ``average_tail=0``, without
        ``constraint_split``). "auto": 1.0 for ``accuracy_gap`` and
        ``gap_and_loss``, 0.05 otherwise (:data:`TARGET_DEFAULTS`; the studies behind the values
        are in docs/mitigation.md).
    constraint_phase : {"before", "after", "both", "none"}, default="after"
        When the constraint is enforced: during dense training (the paper's *Fair Bf*), during
        fine-tuning of the pruned net (*Fair Aft*), both (*Fair Both*), or never. With
        ``pruning_rate=0`` and no ``quantization_bits`` any phase but "none" constrains the
        dense training; with ``quantization_bits`` "after" constrains the quantization-aware
        fine-tuning.
    constraint_target : {"group_loss", "excess_risk", "accuracy_gap", "gap_and_loss", \
            "gradient_norm"}, default="group_loss"
        ``group_loss`` constrains group losses, ``|J(θ; D_a) − J(θ; D)| ≤ ε`` (the paper's eq. 8
        for ε = 0). ``excess_risk`` constrains what pruning costs each group while fine-tuning,
        ``|R(a) − R| ≤ ε`` with ``R(a) = J(θ; D_a) − J(θ*; D_a)``, using the per-sample losses of
        the dense net θ* computed once before pruning. ``accuracy_gap`` (CEAG, the
        mitigation of *Balancing Act*) constrains the excess accuracy gap ``ψ_a ≤ ε`` while
        fine-tuning (see the module docstring). ``gap_and_loss`` (the recommended mitigation)
        is CEAG plus one-sided equal-loss constraints ``J(θ; D_a) − J(θ; D) ≤ 0`` with
        multipliers of their own (``loss_dual_lr``), which lift the worst-off groups that CEAG
        alone levels down (docs/mitigation.md). ``gradient_norm`` is the paper's eq. (6)
        without its Hessian term: ``|‖∇J(θ; B_a)‖ − ‖∇J(θ; B)‖| ≤ ε`` on every batch, by
        double backward. The
        excess and ψ targets apply to fine-tuning only; dense training (``before``/``both``)
        constrains group losses.
    tolerance : float >= 0 or "auto", default="auto"
        ε of the inequality constraints, so multipliers shrink again once a constraint holds.
        "auto": 0 (for ``group_loss`` and ``excess_risk`` the paper's equalities; for
        ``accuracy_gap`` ψ_a ≤ 0, pushed as far as the dual dynamics allow).
    dual_update : "epoch", int >= 1 or "auto", default="auto"
        Dual step after every epoch, or every ``k`` training batches. "auto": every 20 batches
        for the ψ targets (``accuracy_gap``, ``gap_and_loss``), every epoch otherwise.
    dual_dynamics : {"gradient", "damped"} or "auto", default="auto"
        ``gradient``: projected dual ascent on the Lagrangian ``J + Σ λ_a c_a``. ``damped``: the
        Lagrangian normalised by ``1 + Σ λ_a``, multipliers capped at ``multiplier_cap``.
        "auto": ``damped`` for the ψ targets, ``gradient`` otherwise.
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
        Number of epochs of each constrained run (the dense training, or a fine-tuning) before
        its first dual update; the multipliers keep their values until then (0 at the start).
    noise_margin : float >= 0 or "auto", default="auto"
        For ``accuracy_gap`` with training duals: the dual steps act on the lower confidence
        bound ``ψ̂_a − noise_margin · SE_a`` of every group's replay-buffer estimate (SE: the
        standard error of the buffer mean), so a violation the buffer cannot tell from zero
        does not grow a multiplier. "auto": 1.0 for ``accuracy_gap``, 0 otherwise. Not used by
        held-out duals (``constraint_split``) or the other targets.
    average_tail : float in [0, 1) or "auto", default="auto"
        Share of the last training batches of every constrained fine-tuning run whose iterates
        (the weights at every dual step, and the final ones) are averaged into the returned
        weights (:class:`TailAverage`); 0 returns the last iterate. With ``constraint_split``
        and ``best_iterate`` the averaged weights are one more candidate of the selection.
        "auto": 0.25 for ``accuracy_gap`` and ``gap_and_loss``, 0 otherwise
        (docs/mitigation.md: the average is what carries the cut of ψ to test data).
    loss_dual_lr : float >= 0 or "auto", default="auto"
        For the ψ targets with training duals: the dual step size of one-sided equal-loss
        constraints ``J(θ; D_a) − J(θ; D) ≤ 0`` added to CEAG's ψ_a ≤ ε, with multipliers ν_a
        of their own; the primal step follows ``(J + Σ_a λ_a J_a + Σ_a ν_a (J_a − sg[J])) /
        (1 + Σ λ + Σ ν)``, ``sg`` a stop-gradient. They pull up the groups whose loss is above
        the average (the worst-off), which CEAG alone may level down. 0 leaves CEAG as it is.
        "auto": 0.05 for ``gap_and_loss``, 0 otherwise.
    **kwargs
        Every :class:`~fairprune_sk.PrunableNetClassifier` and skorch parameter.

    Attributes
    ----------
    multipliers_ : pandas.Series
        One Lagrange multiplier per training group.
    groups_ : pandas.Index
        The training groups (a ``MultiIndex`` for several sensitive columns).
    dual_lr_, tolerance_, dual_update_, dual_dynamics_, noise_margin_, average_tail_ :
        The values used (``"auto"`` resolved for the ``constraint_target``).

    Raises
    ------
    DivergenceError
        From ``fit`` / ``partial_fit`` when the loss or a weight becomes non-finite; the
        estimator is left as it was before the call.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from fairprune_sk import FairConstrainedNet
    >>> from fairprune_sk.models import MLP
    >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    >>> A = np.where(X[:, 0] > 0, "a", "b")
    >>> fair = FairConstrainedNet(MLP, max_epochs=2, pruning_rate=0.8, fine_tune_epochs=2,
    ...                           constraint_target="accuracy_gap", random_state=0)
    >>> fair.fit(X, y, sensitive_features=A).multipliers_.index.tolist()
    ['a', 'b']
    >>> bool((fair.multipliers_ >= 0).all()), fair.history[-1, "phase"]
    (True, 'fine_tune')
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
        "noise_margin": [StrOptions({"auto"}), Interval(Real, 0.0, None, closed="left")],
        "average_tail": [StrOptions({"auto"}), Interval(Real, 0.0, 1.0, closed="left")],
        "loss_dual_lr": [StrOptions({"auto"}), Interval(Real, 0.0, None, closed="left")],
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
        noise_margin: float | str = "auto",
        average_tail: float | str = "auto",
        loss_dual_lr: float | str = "auto",
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
        self.noise_margin = noise_margin
        self.average_tail = average_tail
        self.loss_dual_lr = loss_dual_lr

    @property
    def _default_callbacks(self) -> list:
        callbacks = super()._default_callbacks[:-1]
        print_log = TerminalPrintLog(keys_ignored=["constraint_violation", "multipliers"])
        return callbacks + [("dual_ascent", DualAscent()), ("print_log", print_log)]

    def _validate_own_params(self) -> None:
        """Check the parameters, then resolve the ``"auto"`` ones into ``*_`` attributes."""
        super()._validate_own_params()
        if self.constraint_target == "gradient_norm" and self.constraint_split is not None:
            raise ValueError(
                "constraint_target='gradient_norm' measures its constraints on the training "
                f"batches; constraint_split must be None (got {self.constraint_split!r})"
            )
        defaults = TARGET_DEFAULTS[self.constraint_target]
        for name in AUTO_PARAMS:
            value = getattr(self, name)
            setattr(self, f"{name}_", defaults[name] if isinstance(value, str) and value == "auto"
                    else value)

    # ------------------------------------------------------------------------------------------
    # the dual state (a fitted attribute: copied with the net, restored by its transactions)
    # ------------------------------------------------------------------------------------------
    @property
    def multipliers_(self) -> pd.Series:
        """One Lagrange multiplier per training group."""
        self.check_is_fitted(["groups_", "dual_state_"])
        multipliers = self.dual_state_.multipliers.copy()
        return pd.Series(multipliers, index=self.groups_, name="multiplier")

    def _copied_fitted_state(self) -> dict[str, Any]:
        """A copy of ``dual_state_`` for a sibling (``pruned_copy``, ``dense_reference``, ...)."""
        state = getattr(self, "dual_state_", None)
        return {} if state is None else {"dual_state_": state.copy()}

    @contextmanager
    def _transaction(self, *, in_place: bool) -> Iterator[None]:
        """The parent's transaction; the block trains a copy of ``dual_state_``, so a failed
        call leaves the original in place."""
        with super()._transaction(in_place=in_place):
            if getattr(self, "dual_state_", None) is not None:
                self.dual_state_ = self.dual_state_.copy()
            yield

    def _constraint_active(self) -> bool:
        phase = getattr(self, "phase_", "train")
        if self.constraint_phase == "none":
            return False
        if phase == "train":
            return self.constraint_phase in ("before", "both") or (
                self.pruning_rate == 0 and self.quantization_bits is None)
        return self.constraint_phase in ("after", "both")

    def _targets_accuracy_gap(self) -> bool:
        """CEAG acts while fine-tuning against a dense reference; dense training uses losses."""
        return self.constraint_target in PSI_TARGETS and getattr(self, "phase_", "") == (
            "fine_tune"
        )

    def _uses_heldout(self) -> bool:
        """Whether the dual steps measure the constraints on the ``constraint_split`` rows."""
        state = getattr(self, "dual_state_", None)
        return state is not None and state.heldout is not None and self.phase_ == "fine_tune"

    def _heldout_measure(self, held: Mapping[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """Constraint values and accuracy of the current net on the held-out rows ``held``."""
        logits = eval_logits(self.module_, held[INPUT_KEY], self.device)
        y = torch.as_tensor(held["y"], device=logits.device)
        with torch.no_grad():
            losses = self.per_sample_loss(logits, y).double().cpu().numpy()
            correct = (logits.argmax(dim=1) == y).cpu().numpy().astype(np.float64)
        codes, n_groups = held[GROUP_KEY], len(self.groups_)
        counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
        if self.constraint_target in PSI_TARGETS:
            drop = held[REFERENCE_CORRECT_KEY] - correct
            with np.errstate(invalid="ignore", divide="ignore"):
                group_drop = np.bincount(codes, weights=drop, minlength=n_groups) / counts
            return group_drop - drop.mean(), float(correct.mean())
        if self.constraint_target == "excess_risk":
            losses = losses - held[REFERENCE_LOSS_KEY]
        with np.errstate(invalid="ignore", divide="ignore"):
            group_loss = np.bincount(codes, weights=losses, minlength=n_groups) / counts
        return np.abs(group_loss - losses.mean()), float(correct.mean())

    def _reference_outputs(
        self, X: np.ndarray | NetStream, y_index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample loss of the dense net θ* and whether it is correct (eval mode, no grad);
        on a stream, one pass over its batches in order."""
        # θ* as a plain module, not a copy of the estimator
        module = self.module_ if self.dense_state_dict_ is None else self._dense_module()
        if isinstance(X, NetStream):
            losses = np.empty(len(X), dtype=np.float32)
            correct = np.empty(len(X), dtype=np.float32)

            def record(batch: Any, y: torch.Tensor, positions: np.ndarray) -> None:
                x = batch[INPUT_KEY] if isinstance(batch, Mapping) else batch
                logits = module(x.to(self.device))
                y = y.to(logits.device)
                losses[positions] = self.per_sample_loss(logits, y).cpu().numpy()
                correct[positions] = (logits.argmax(dim=1) == y).cpu().numpy()

            was_training = module.training
            module.eval()
            try:
                with torch.no_grad():
                    X.for_each_batch(record)  # the caller's RNG is left as it was
            finally:
                module.train(was_training)
            return losses, correct
        logits = eval_logits(module, X, self.device)  # no DataLoader: no RNG draws
        y = torch.as_tensor(y_index, device=logits.device)
        with torch.no_grad():
            losses = self.per_sample_loss(logits, y)
            correct = logits.argmax(dim=1) == y
        return (losses.cpu().numpy().astype(np.float32),
                correct.cpu().numpy().astype(np.float32))

    def _fine_tuning_input(self, data: Any, y_index: np.ndarray) -> Any:
        """Add what the target needs from θ* and set the held-out rows of ``constraint_split``.

        ``excess_risk`` gets the dense net's per-sample losses, ``accuracy_gap`` whether θ*
        classified each sample correctly, computed once (on a stream, in one pass; it then
        carries them as aligned arrays).
        """
        stream = isinstance(data, NetStream)
        fields = data.arrays if stream else data
        if not (isinstance(fields, Mapping) and GROUP_KEY in fields
                and self._constrains_fine_tuning()):
            return data
        if stream and self.constraint_split is not None:
            raise ValueError(
                f"constraint_split={self.constraint_split!r} needs in-memory arrays (its dual "
                "steps evaluate every held-out row); with a torch Dataset, set "
                "constraint_split=None"
            )
        state = self.dual_state_
        codes = np.asarray(fields[GROUP_KEY])
        shares = np.bincount(codes, minlength=len(self.groups_)).astype(np.float64)
        state.group_shares = shares / shares.sum()
        if self.constraint_target != "group_loss":  # the batches carry only what is used
            losses, correct = self._reference_outputs(data if stream else data[INPUT_KEY], y_index)
            if self.constraint_target in PSI_TARGETS:
                extra = {REFERENCE_CORRECT_KEY: correct}
            else:
                extra = {REFERENCE_LOSS_KEY: losses}
            data = data.with_arrays(**extra) if stream else {**data, **extra}
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
            state.heldout = {key: np.asarray(value)[held] for key, value in data.items()}
            state.heldout["y"] = y_index[held]
            state.heldout_rows = held
        return data

    def _constrains_fine_tuning(self) -> bool:
        return self.constraint_phase in ("after", "both")

    def _encode_groups(self, sensitive_features: Any, n_samples: int) -> np.ndarray:
        """Codes of the training groups; unseen groups are an error for training."""
        groups = group_codes(sensitive_features, n_samples)
        positions = self.groups_.get_indexer(groups.index)
        if np.any(positions < 0):
            unseen = list(groups.index[positions < 0])
            raise ValueError(f"sensitive_features has groups not seen in fit: {unseen}")
        return positions[groups.codes].astype(np.int64)

    def _diverged(self, what: str) -> DivergenceError:
        return DivergenceError(
            DIVERGED.format(
                name=type(self).__name__,
                what=what,
                epoch=len(self.history),
                phase=getattr(self, "phase_", "train"),
                multipliers=np.round(self.dual_state_.multipliers, 4).tolist(),
                dual_lr=self.dual_lr_,
                lr=self.lr,
            )
        )

    def _check_finite_weights(self) -> None:
        for name, param in self.module_.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise self._diverged(f"the weight {name} became non-finite")

    def _checked(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss``, unless its value is not finite (:class:`DivergenceError`)."""
        value = loss.item()
        if not np.isfinite(value):
            raise self._diverged(f"the training loss became {value}")
        return loss

    # ------------------------------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------------------------------
    def fit(
        self, X: Any, y: Any, *, sensitive_features: Any = None, sample_weight: Any = None
    ) -> Self:
        """Train (constrained where ``constraint_phase`` says), prune and fine-tune.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a torch Dataset or DataLoader
            Training data, as for :meth:`PrunableNetClassifier.fit`; a ``DataLoader`` must not
            shuffle (the groups follow the data's order; pass its ``Dataset`` to have the net
            shuffle it).
        y : array-like of shape (n_samples,) or None
            Class labels; None with a ``Dataset``: the items' labels.
        sensitive_features : array-like, Series or DataFrame of shape (n_samples,) or \
                (n_samples, k), or str or tuple of str
            Group membership (several columns: intersectional groups). Required unless
            ``constraint_phase="none"``. Travels inside the dataset, so batches and the
            validation split slice it with X. With a ``Dataset``: an array aligned with its
            items, or the name(s) of fields of its dict items. A ``Dataset``'s labels (when
            ``y`` is None) and fields are read in one pass over the items before training. A
            data-driven ``pruning_method`` ranks the weights on these rows and groups.
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
        self._check_trainable("fit", self.module)
        fields = sensitive_fields(sensitive_features) if is_stream(X) else None
        with self._transaction(in_place=self._trains_in_place()):
            X_arr, y_index, classes = self._validate_training_data(
                X, y, reset=True, classes=classes, aligned=True, fields=fields or ()
            )
            if fields:
                sensitive_features = X_arr.field_frame(X_arr.item_fields)
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
            self.dual_state_ = DualState(groups.index)  # a new fit: λ = 0
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

        On an unfitted net this is ``fit`` (with ``classes``, all the labels in any order). The
        data are those of :meth:`fit`; see :meth:`fine_tune` for a net that was initialized
        without a fit.
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
        """Train ``epochs`` more epochs with the masks held, constrained if the phase says so.

        The data are those of :meth:`fit`. A net initialized from a pretrained module without
        a fit (``initialize()``) learns its groups here, from ``sensitive_features``. Under a
        ``constraint_phase`` of ``"after"`` or ``"both"``, fine-tuning against the dense
        reference θ* (``excess_risk``, ``accuracy_gap``) needs one: it is the weights at the
        first ``prune``, the ``weight_orig`` of a module given with torch prune masks, or
        ``reference_module``; without one, this raises a ``ValueError`` saying so, rather than
        train without the constraint.
        """
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
            groups=sensitive_features,
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
        name = type(self).__name__
        if epochs:
            self._check_trainable("train")
        fields = sensitive_fields(sensitive_features) if is_stream(X) else None
        with self._transaction(in_place=True):
            phase = "fine_tune" if self.dense_state_dict_ is not None else "train"
            self.phase_ = phase
            if epochs and phase == "train" and self._constrains_fine_tuning():
                why = None
                if self.constraint_target not in ("group_loss", "gradient_norm"):
                    why = f"constraint_target={self.constraint_target!r} fine-tunes against it"
                elif not self._constraint_active():
                    why = (f"constraint_phase={self.constraint_phase!r} with pruning_rate="
                           f"{self.pruning_rate!r} constrains only the fine-tuning of a pruned net")
                if why is not None:
                    raise ValueError(
                        f"{name} has no dense reference θ* (dense_state_dict_ is None) and {why}:"
                        " prune it first (θ* is the weights at the first prune), wrap a module "
                        "that carries torch prune masks (θ* from its weight_orig), or pass "
                        "reference_module= (θ* as a module of its own)"
                    )
            X_arr, y_index, _ = self._validate_training_data(
                X, y, reset=False, classes=classes, aligned=True, fields=fields or ()
            )
            if fields:
                sensitive_features = X_arr.field_frame(X_arr.item_fields)
            weight = self._check_sample_weight(sample_weight, X_arr)
            codes = None
            if getattr(self, "dual_state_", None) is None:  # initialized without a fit
                groups = group_codes(np.zeros(len(y_index), dtype=np.int64)
                                     if sensitive_features is None else sensitive_features,
                                     len(y_index))
                self.groups_ = groups.index
                self.dual_state_ = DualState(groups.index)
                if sensitive_features is not None:
                    codes = groups.codes
            elif sensitive_features is not None:
                codes = self._encode_groups(sensitive_features, len(y_index))
            if codes is None and self._constraint_active():
                raise ValueError(
                    MISSING_SENSITIVE_FEATURES.format(
                        name=type(self).__name__, phase=self.constraint_phase
                    )
                )
            data = self._training_input(X_arr, sample_weight=weight, group=codes)
            self.dual_state_.heldout = None
            if phase == "fine_tune":
                data = self._fine_tuning_input(data, y_index)
            with self._seeded(offset=len(self.history)):
                self._train_epochs(data, y_index, epochs, phase=phase)
        return self

    def _train_epochs(self, data: Any, y_index: np.ndarray, epochs: int, phase: str) -> None:
        """As the parent, but constrained fine-tuning trains on the rows not held out."""
        state = self.dual_state_
        if phase == "fine_tune" and state.heldout is not None:
            keep = ~state.heldout_rows
            data = {key: np.asarray(value)[keep] for key, value in data.items()}
            y_index = y_index[keep]
        self._run_epochs_ = epochs  # the run's length, for tail averaging and dual_update
        try:
            super()._train_epochs(data, y_index, epochs, phase)
        finally:
            del self._run_epochs_

    # ------------------------------------------------------------------------------------------
    # the batch loss: J, plus the Lagrangian penalty while a constraint acts
    # ------------------------------------------------------------------------------------------
    def _gradient_norm_loss(self, loss: torch.Tensor, losses: torch.Tensor, codes: torch.Tensor,
                            multipliers: torch.Tensor, weight: torch.Tensor | None,
                            damped: bool) -> torch.Tensor:
        """The paper's eq. (6) target on the batch, with the group gradient norms recorded for
        the dual step (:func:`~fairprune_sk.constrained._lagrangian.gradient_norm_lagrangian`)."""
        params = [p for p in self.module_.parameters() if p.requires_grad]
        lagrangian, gaps = gradient_norm_lagrangian(
            loss, losses, codes, multipliers, params, weight=weight, damped=damped
        )
        present = torch.isfinite(gaps)
        state = self.dual_state_
        state.accumulate(
            torch.where(present, gaps.abs(), 0.0).double().cpu().numpy(),
            present.double().cpu().numpy(),
        )
        return lagrangian

    def _ceag_on_training_batches(self) -> bool:
        """Whether CEAG's dual steps read the training batches' accuracy drops (a replay
        buffer), rather than the held-out rows of ``constraint_split``."""
        return self._targets_accuracy_gap() and not self._uses_heldout()

    def get_loss(
        self, y_pred: torch.Tensor, y_true: Any, X: Any = None, training: bool = False
    ) -> torch.Tensor:
        """The mean (weighted) loss ``J``; while training under an active constraint, the
        Lagrangian of the target (:mod:`fairprune_sk.constrained._lagrangian`).

        The criterion runs once: its per-sample losses give ``J`` and the group terms. Under
        the loss targets with training duals, the batch's per-group loss sums also go to
        ``dual_state_`` for the next dual step. All-zero multipliers give exactly ``J``.
        """
        losses = self.per_sample_loss(y_pred, y_true)
        loss = self._mean_loss(losses, y_true, X)
        if not training:
            return loss
        self._checked(loss)
        if not (isinstance(X, Mapping) and GROUP_KEY in X and self._constraint_active()):
            return loss
        state = self.dual_state_
        codes = to_tensor(X[GROUP_KEY], device=losses.device).long()
        weight = X.get(SAMPLE_WEIGHT_KEY)
        weight = None if weight is None else to_tensor(weight, device=losses.device)
        multipliers = torch.as_tensor(state.multipliers, device=losses.device)
        damped = self.dual_dynamics_ == "damped"
        if self._targets_accuracy_gap():
            loss_multipliers = None
            if self.loss_dual_lr_ and not self._uses_heldout():  # the equal-loss constraints
                sums, weights = group_sums(losses.detach().double(), codes, len(self.groups_),
                                           weight)
                state.accumulate(sums.cpu().numpy(), weights.cpu().numpy())
                loss_multipliers = torch.as_tensor(state.loss_multipliers, device=losses.device)
            if not (state.multipliers.any() or state.loss_multipliers.any()):
                return loss
            return ceag_lagrangian(loss, losses, codes, multipliers, weight=weight, damped=damped,
                                   loss_multipliers=loss_multipliers)
        if self.constraint_target == "gradient_norm":
            return self._gradient_norm_loss(loss, losses, codes, multipliers, weight, damped)
        reference = X.get(REFERENCE_LOSS_KEY)
        reference = None if reference is None else to_tensor(reference, device=losses.device)
        if not self._uses_heldout():  # the dual step averages the batches since the last one
            excess = losses.detach() if reference is None else losses.detach() - reference
            sums, weights = group_sums(excess.double(), codes, len(self.groups_), weight)
            state.accumulate(sums.cpu().numpy(), weights.cpu().numpy())
        if not state.multipliers.any():
            return loss
        return group_loss_lagrangian(
            loss, losses, codes, multipliers, weight=weight, reference_losses=reference,
            damped=damped,
        )
