"""FairConstrainedNet: prune without the disparity, by Lagrangian duality.

Three constraint targets, each a per-group inequality ``c_a(θ) ≤ ε`` (ε = ``tolerance``; 0 gives
the paper's equalities), share one loop (skorch's): the penalty lives in
:meth:`FairConstrainedNet.get_loss`, the dual step in the :class:`DualAscent` callback, which
owns the dual state (multipliers, replay buffer, PI memory) and records violations and
multipliers in ``history``.

- ``group_loss``, the paper's mitigation (Tran et al. 2022, eq. 8):
  ``|J(θ; D_a) − J(θ; D)| ≤ ε``, solved as in Fioretto et al. by primal SGD steps on
  ``J(θ; B) + Σ_a λ_a |J(θ; B_a) − J(θ; B)|`` and dual ascent
  ``λ_a ← max(0, λ_a + dual_lr · (|J_a − J| − ε))``.
- ``excess_risk``: the same on the excess losses ``J(θ; ·) − J(θ*; ·)`` while fine-tuning.
- ``accuracy_gap``, CEAG (Hashemizadeh et al., ICLR 2024, *Balancing Act*): the excess accuracy
  gap ``ψ_a = (acc_a(θ*) − acc_a(θ)) − (acc(θ*) − acc(θ)) ≤ ε`` while fine-tuning the pruned
  net θ against its dense reference θ*.

The design notes sit with the code they explain: CEAG's differentiable proxy and the batch
Lagrangian in :mod:`fairprune_sk.constrained._constraints`; the dual signal (replay buffer, noise margin,
held-out split and best iterate) and tail averaging in :mod:`fairprune_sk.constrained._callback`; the
dual dynamics (``gradient`` / ``damped``, the PI term) and why not ``cooper-optim`` in
:mod:`fairprune_sk.constrained._dual`. A non-finite training loss or weight stops training with
:class:`DivergenceError` (naming ``dual_lr``) and the estimator is restored to its state
before the call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval, StrOptions

from .._validation import check_int
from ..metrics import group_codes
from ..nets import PrunableNetClassifier, TerminalPrintLog
from ..nets._data import INPUT_KEY
from ._callback import DualAscent, DualState
from ._constraints import (
    GROUP_KEY,
    ConstraintsMixin,
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
                     "dual_dynamics": "damped", "noise_margin": 1.0, "average_tail": 0.25},
}
for _defaults in TARGET_DEFAULTS.values():  # the paper's targets: no margin, last iterate
    _defaults.setdefault("noise_margin", 0.0)
    _defaults.setdefault("average_tail", 0.0)
AUTO_PARAMS = ("dual_lr", "tolerance", "dual_update", "dual_dynamics", "noise_margin",
               "average_tail")

MISSING_SENSITIVE_FEATURES = (
    "{name} with constraint_phase={phase!r} needs sensitive_features: call "
    "fit(X, y, sensitive_features=A); inside a Pipeline or GridSearchCV, enable metadata routing "
    "with sklearn.set_config(enable_metadata_routing=True) and pass sensitive_features=A to "
    "their fit (FairConstrainedNet requests it by default)"
)


class FairConstrainedNet(ConstraintsMixin, PrunableNetClassifier):
    """A prunable net trained under per-group constraints by Lagrangian duality.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        As for :class:`~fairprune_sk.PrunableNetClassifier` (outputs logits).
    dual_lr : float >= 0 or "auto", default="auto"
        Step size of the dual steps on the multipliers. 0 trains exactly like
        :class:`~fairprune_sk.PrunableNetClassifier` (with ``average_tail=0``, without
        ``constraint_split``). "auto":
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
        "auto": 0.25 for ``accuracy_gap``, 0 otherwise (docs/mitigation.md: the average is
        what carries the cut of ψ to test data on every block of seeds).
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
    # the dual state (owned by the DualAscent callback)
    # ------------------------------------------------------------------------------------------
    def _dual_ascent(self) -> DualAscent | None:
        """The callback that owns the dual state; None before ``initialize``."""
        for _, callback in getattr(self, "callbacks_", ()):
            if isinstance(callback, DualAscent):
                return callback
        if hasattr(self, "callbacks_"):
            raise ValueError(
                f"{type(self).__name__} needs its 'dual_ascent' callback (a DualAscent, which "
                "owns the multipliers); do not remove or replace it"
            )
        return None

    @property
    def _dual_state(self) -> DualState | None:
        """The multipliers, replay buffer, accumulators, held-out rows and best iterate; None
        before the first training run."""
        dual = self._dual_ascent()
        return None if dual is None else dual.state_

    @property
    def multipliers_(self) -> pd.Series:
        """One Lagrange multiplier per training group."""
        self.check_is_fitted(["groups_"])
        multipliers = self._dual_state.multipliers.copy()
        return pd.Series(multipliers, index=self.groups_, name="multiplier")

    @contextmanager
    def _transaction(self, *, in_place: bool) -> Iterator[None]:
        """The parent's transaction, which also restores the dual state if the block raises."""
        dual = self._dual_ascent()
        state = None if dual is None else dual.state_
        saved = None if state is None else state.snapshot()
        try:
            with super()._transaction(in_place=in_place):
                yield
        except BaseException:
            if dual is not None:
                dual.state_ = saved
            raise

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
            self.groups_ = groups.index  # a new index: DualAscent starts a new DualState
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
            self.phase_ = phase
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
            if self._dual_state is not None:
                self._dual_state.heldout = None
            if phase == "fine_tune":
                data = self._fine_tuning_input(data, y_index)
            with self._seeded(offset=len(self.history)):
                self._train_epochs(data, y_index, epochs, phase=phase)
        return self

    def fit_loop(self, X: Any, y: Any = None, epochs: int | None = None, **fit_params: Any) -> Self:
        """skorch's loop; a phase whose constraint does not act trains on what a
        :class:`PrunableNetClassifier` trains on.

        The group codes ride along with X only while the constraint acts, so an unconstrained
        phase (the dense training of the default ``constraint_phase="after"``) runs the plain
        net's batches, at its speed, with the same batches and weights.
        """
        if isinstance(X, Mapping) and GROUP_KEY in X and not self._constraint_active():
            X = {key: value for key, value in X.items() if key != GROUP_KEY}
            if list(X) == [INPUT_KEY]:
                X = X[INPUT_KEY]
        return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def _train_epochs(self, data: Any, y_index: np.ndarray, epochs: int, phase: str) -> None:
        """As the parent, but constrained fine-tuning trains on the rows not held out."""
        state = self._dual_state
        if phase == "fine_tune" and state is not None and state.heldout is not None:
            keep = ~state.heldout_rows
            data = {key: np.asarray(value)[keep] for key, value in data.items()}
            y_index = y_index[keep]
        dual = self._dual_ascent()
        if dual is not None:
            dual.run_epochs = epochs  # for tail averaging, which needs the run's length
        super()._train_epochs(data, y_index, epochs, phase)
