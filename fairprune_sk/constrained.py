"""FairConstrainedNet: prune without the disparity, by equal group losses (Lagrangian duality).

The paper's mitigation (Tran et al. 2022, eq. 8; eq. 7 of the project summary):

    minimise_θ  J(θ; D)   subject to   J(θ; D_a) = J(θ; D)   for every group a,

solved as in Fioretto et al. by alternating a primal SGD step on the Lagrangian

    L(θ, λ) = J(θ; B) + Σ_a λ_a · |J(θ; B_a) − J(θ; B)|          (per batch B)

with dual ascent ``λ_a ← max(0, λ_a + dual_lr · |J(θ; D_a) − J(θ; D)|)`` on the violation
averaged over the epoch (or over the last ``k`` batches). The training loop is skorch's; the
penalty lives in :meth:`FairConstrainedNet.get_loss` and the dual step in the
:class:`DualAscent` callback, which records violations and multipliers in ``history``.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.callbacks import Callback, PrintLog
from skorch.utils import to_tensor

from .metrics import group_codes
from .nets import INPUT_KEY, SAMPLE_WEIGHT_KEY, PrunableNetClassifier

GROUP_KEY = "group"
REFERENCE_LOSS_KEY = "reference_loss"
CONSTRAINT_PHASES = ("before", "after", "both", "none")
CONSTRAINT_TARGETS = ("group_loss", "excess_risk")

MISSING_SENSITIVE_FEATURES = (
    "{name} with constraint_phase={phase!r} needs sensitive_features: call "
    "fit(X, y, sensitive_features=A); inside a Pipeline or GridSearchCV, enable metadata routing "
    "with sklearn.set_config(enable_metadata_routing=True) and pass sensitive_features=A to "
    "their fit (FairConstrainedNet requests it by default)"
)


class DualAscent(Callback):
    """Dual step ``λ_a ← max(0, λ_a + dual_lr · violation_a)`` and its record in ``history``.

    The net accumulates, per training batch, the detached per-group loss sums and weights;
    this callback turns them into the averaged violations ``|J_a − J|`` and updates the
    multipliers every epoch (``dual_update="epoch"``) or every ``k`` batches
    (``dual_update=k``). Before epoch ``kickin`` the multipliers stay at zero.
    """

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        net._reset_dual_accumulators()
        net._epoch_violation_sum = None
        net._epoch_violation_batches = 0

    def on_batch_end(
        self, net: Any, batch: Any = None, training: bool = False, **kwargs: Any
    ) -> None:
        if not training or not net._constraint_active():
            return
        if net.dual_update != "epoch":
            net._batches_since_update += 1
            if net._batches_since_update >= net.dual_update:
                violation = net._averaged_violation()
                net._record_batch_violation(violation)
                self._step(net, violation)
                net._reset_dual_accumulators()

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        if not net._constraint_active():
            net.history.record("constraint_violation", None)
            net.history.record("max_violation", float("nan"))  # keeps PrintLog's columns aligned
            net.history.record("multipliers", net._multipliers.tolist())
            return
        if net.dual_update == "epoch":
            violation = net._averaged_violation()
            self._step(net, violation)
        else:
            violation = net._mean_batch_violation()
        net.history.record("constraint_violation", violation.tolist())
        net.history.record("max_violation", float(np.nanmax(violation)) if violation.size else 0.0)
        net.history.record("multipliers", net._multipliers.tolist())

    @staticmethod
    def _step(net: Any, violation: np.ndarray) -> None:
        if len(net.history) <= net.kickin:  # history row of this epoch already exists
            return
        seen = ~np.isnan(violation)
        update = net._multipliers.copy()
        update[seen] = np.maximum(0.0, update[seen] + net.dual_lr * violation[seen])
        net._multipliers = update


class FairConstrainedNet(PrunableNetClassifier):
    """A prunable net trained under equal group losses, ``J(θ; D_a) = J(θ; D)`` for every group.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        As for :class:`~fairprune_sk.PrunableNetClassifier` (outputs logits).
    dual_lr : float >= 0, default=0.05
        Step size of the dual ascent on the multipliers. 0 trains exactly like
        :class:`~fairprune_sk.PrunableNetClassifier`.
    constraint_phase : {"before", "after", "both", "none"}, default="after"
        When the constraint is enforced: during dense training (the paper's *Fair Bf*), during
        fine-tuning of the pruned net (*Fair Aft*), both (*Fair Both*), or never. With
        ``pruning_rate=0`` any phase but "none" constrains the dense training.
    constraint_target : {"group_loss", "excess_risk"}, default="group_loss"
        ``group_loss`` equalises group losses, ``J(θ; D_a) = J(θ; D)`` (the paper's eq. 8).
        ``excess_risk`` equalises what pruning costs each group while fine-tuning,
        ``J(θ; D_a) − J(θ*; D_a) = J(θ; D) − J(θ*; D)`` (i.e. R(a) equal for all groups, ξ = 0),
        using the per-sample losses of the dense net θ* computed once before pruning. It applies
        to fine-tuning only; dense training (``before``/``both``) equalises group losses.
    dual_update : "epoch" or int >= 1, default="epoch"
        Update the multipliers after every epoch, or every ``k`` training batches.
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

    Examples
    --------
    >>> fair = FairConstrainedNet(MLP, max_epochs=10, dual_lr=0.05, pruning_rate=0.8,
    ...                           fine_tune_epochs=5, constraint_phase="after")  # doctest: +SKIP
    >>> fair.fit(X, y, sensitive_features=A).multipliers_                       # doctest: +SKIP
    """

    __metadata_request__fit = {"sensitive_features": True}

    _parameter_constraints: dict = {
        **PrunableNetClassifier._parameter_constraints,
        "dual_lr": [Interval(Real, 0.0, None, closed="left")],
        "constraint_phase": [StrOptions(set(CONSTRAINT_PHASES))],
        "constraint_target": [StrOptions(set(CONSTRAINT_TARGETS))],
        "dual_update": [StrOptions({"epoch"}), Interval(Integral, 1, None, closed="left")],
        "kickin": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        module: Any,
        *,
        dual_lr: float = 0.05,
        constraint_phase: str = "after",
        constraint_target: str = "group_loss",
        dual_update: str | int = "epoch",
        kickin: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, **kwargs)
        self.dual_lr = dual_lr
        self.constraint_phase = constraint_phase
        self.constraint_target = constraint_target
        self.dual_update = dual_update
        self.kickin = kickin

    @property
    def _default_callbacks(self) -> list:
        callbacks = super()._default_callbacks[:-1]
        print_log = PrintLog(keys_ignored=["constraint_violation", "multipliers"])
        return callbacks + [("dual_ascent", DualAscent()), ("print_log", print_log)]

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

    @property
    def multipliers_(self) -> pd.Series:
        """One Lagrange multiplier per training group."""
        self.check_is_fitted(["groups_"])
        return pd.Series(self._multipliers.copy(), index=self.groups_, name="multiplier")

    def _reset_dual_accumulators(self) -> None:
        self._dual_sums = None  # per group [Σ w·loss, Σ w] since the last dual step
        self._batches_since_update = 0

    def _accumulate_dual_sums(self, sums: torch.Tensor) -> None:
        sums = sums.double()
        self._dual_sums = sums if self._dual_sums is None else self._dual_sums + sums

    def _averaged_violation(self) -> np.ndarray:
        """``|J_a − J|`` over the accumulated batches; NaN for groups that were absent."""
        if self._dual_sums is None:
            return np.full(len(self.groups_), np.nan)
        loss_sum, weight_sum = self._dual_sums.cpu().numpy().T
        with np.errstate(invalid="ignore", divide="ignore"):
            group_loss = loss_sum / weight_sum
        overall = loss_sum.sum() / max(weight_sum.sum(), 1e-12)
        return np.abs(group_loss - overall)

    def _record_batch_violation(self, violation: np.ndarray) -> None:
        filled = np.nan_to_num(violation, nan=0.0)
        if self._epoch_violation_sum is None:
            self._epoch_violation_sum = np.zeros_like(filled)
        self._epoch_violation_sum += filled
        self._epoch_violation_batches += 1

    def _mean_batch_violation(self) -> np.ndarray:
        if not self._epoch_violation_batches:
            return self._averaged_violation()
        return self._epoch_violation_sum / self._epoch_violation_batches

    # ------------------------------------------------------------------------------------------
    # loss: J + Σ_a λ_a |J_a − J| on the batch
    # ------------------------------------------------------------------------------------------
    def get_loss(
        self, y_pred: torch.Tensor, y_true: Any, X: Any = None, training: bool = False
    ) -> torch.Tensor:
        """Mean (weighted) loss, plus the Lagrangian penalty while training a constrained phase."""
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not (
            training and isinstance(X, Mapping) and GROUP_KEY in X and self._constraint_active()
        ):
            return loss
        losses = self.per_sample_loss(y_pred, y_true)
        reference = X.get(REFERENCE_LOSS_KEY)
        if reference is not None:  # excess-risk target: loss minus the dense net's loss
            losses = losses - to_tensor(reference, device=losses.device).to(losses.dtype)
        weight = X.get(SAMPLE_WEIGHT_KEY)
        weight = (
            torch.ones_like(losses)
            if weight is None
            else to_tensor(weight, device=losses.device).to(losses.dtype)
        )
        codes = to_tensor(X[GROUP_KEY], device=losses.device).long()
        # one scatter for the whole batch: per group [Σ w·loss, Σ w]
        sums = losses.new_zeros(len(self.groups_), 2).index_add_(
            0, codes, torch.stack([losses * weight, weight], dim=1)
        )
        self._accumulate_dual_sums(sums.detach())

        multipliers = torch.as_tensor(self._multipliers, dtype=losses.dtype, device=losses.device)
        group_weight = sums[:, 1]
        penalized = (multipliers > 0) & (group_weight > 0)  # absent groups contribute nothing
        if not bool(penalized.any()):
            return loss  # λ = 0 on every present group: exactly the unconstrained loss
        overall = sums[:, 0].sum() / group_weight.sum()
        group_loss = sums[penalized, 0] / group_weight[penalized]
        return loss + (multipliers[penalized] * (group_loss - overall).abs()).sum()

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
            Per-sample loss weights, also used in the group losses.

        Returns
        -------
        self
        """
        self._validate_own_params()
        with self._transaction(deep=self._trains_in_place()):
            X_arr, y_index, classes = self._validate_training_data(X, y, reset=True)
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
        """Train ``max_epochs`` more epochs (masks held), constrained if the phase says so."""
        if not self.initialized_:
            return self.fit(
                X, y, sensitive_features=sensitive_features, sample_weight=sample_weight
            )
        self._validate_own_params()
        with self._transaction(deep=True):
            X_arr, y_index, _ = self._validate_training_data(X, y, reset=False)
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
            if phase == "fine_tune":
                data = self._fine_tuning_input(data, y_index)
            with self._seeded(offset=len(self.history)):
                self._train_epochs(
                    data,
                    y_index,
                    self.max_epochs,
                    phase=phase,
                )
        return self

    def _fine_tuning_input(self, data: Any, y_index: np.ndarray) -> Any:
        """Add the dense net's per-sample losses when fine-tuning targets equal excess risk."""
        targets_excess = self.constraint_target == "excess_risk"
        if not (targets_excess and isinstance(data, Mapping) and GROUP_KEY in data):
            return data
        return {**data, REFERENCE_LOSS_KEY: self._reference_losses(data[INPUT_KEY], y_index)}

    def _reference_losses(self, X: np.ndarray, y_index: np.ndarray) -> np.ndarray:
        """Per-sample loss of the dense net θ* (eval mode, no gradients)."""
        reference = self if self.dense_state_dict_ is None else self.dense_reference()
        logits = reference.forward(X, training=False)
        with torch.no_grad():
            losses = reference.per_sample_loss(logits, torch.as_tensor(y_index))
        return losses.cpu().numpy().astype(np.float32)

    def _encode_groups(self, sensitive_features: Any, n_samples: int) -> np.ndarray:
        """Codes of the training groups; unseen groups are an error for training."""
        groups = group_codes(sensitive_features, n_samples)
        positions = self.groups_.get_indexer(groups.index)
        if np.any(positions < 0):
            unseen = list(groups.index[positions < 0])
            raise ValueError(f"sensitive_features has groups not seen in fit: {unseen}")
        return positions[groups.codes].astype(np.int64)
