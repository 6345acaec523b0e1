"""What the constraints of :class:`~fairprune_sk.FairConstrainedNet` measure, and its loss.

The Lagrangian of a training batch (:meth:`ConstraintsMixin.get_loss`, with the CEAG proxy in
:meth:`ConstraintsMixin._ceag_lagrangian`), the constraint values on the held-out rows of
``constraint_split``, the outputs of the dense net θ* the excess targets compare with, and the
divergence guard. The dual steps on these values live in :mod:`fairprune_sk.constrained._callback`.

CEAG's primal step goes through the differentiable proxy
``(J(θ; B_a) − J(θ*; B_a)) − sg[J(θ; B) − J(θ*; B)]`` of ψ_a, where ``sg`` is a
stop-gradient: with the overall term inside the gradient the penalty rewards raising
*everyone's* loss (a smaller ψ_a is also reached through a larger overall drop), which collapsed
a prototype to 10 % accuracy on Fashion-MNIST at 95-99 % sparsity. A group absent from a batch
adds nothing to that batch's penalty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..metrics import group_codes
from ..nets._data import INPUT_KEY, SAMPLE_WEIGHT_KEY, as_numpy
from ._dual import stratified_holdout

__all__ = [
    "GROUP_KEY",
    "REFERENCE_CORRECT_KEY",
    "REFERENCE_LOSS_KEY",
    "ConstraintsMixin",
    "DivergenceError",
    "EMPTY_HELDOUT_GROUP",
    "eval_logits",
    "numpy_dtype",
]

GROUP_KEY = "group"
REFERENCE_LOSS_KEY = "reference_loss"
REFERENCE_CORRECT_KEY = "reference_correct"
EMPTY_HELDOUT_GROUP = (
    "constraint_split={split!r} leaves group {group!r} ({n} training rows) with no held-out "
    "rows for the dual steps; raise constraint_split, merge small groups, or set "
    "constraint_split=None"
)
DIVERGED = (
    "{name} diverged: {what} in epoch {epoch} ({phase}, multipliers {multipliers}). Lower "
    "dual_lr (got {dual_lr!r}) or lr (got {lr!r}), or use dual_dynamics='damped' (multipliers "
    "capped at multiplier_cap); the estimator was restored to its state before this call"
)


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype of a torch dtype (``torch.float32`` → ``float32``)."""
    found = _NUMPY_DTYPES.get(dtype)
    if found is None:
        found = _NUMPY_DTYPES[dtype] = torch.empty(0, dtype=dtype).numpy().dtype
    return found


_NUMPY_DTYPES: dict[torch.dtype, np.dtype] = {}


def eval_logits(module: torch.nn.Module, X: np.ndarray, device: Any) -> torch.Tensor:
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


class ConstraintsMixin:
    """Phases, constraint measurements, the divergence guard and the Lagrangian batch loss."""

    def _constraint_active(self) -> bool:
        phase = getattr(self, "phase_", "train")
        if self.constraint_phase == "none":
            return False
        if phase == "train":
            return self.constraint_phase in ("before", "both") or self.pruning_rate == 0
        return self.constraint_phase in ("after", "both")

    def _targets_accuracy_gap(self) -> bool:
        """CEAG acts while fine-tuning against a dense reference; dense training uses losses."""
        return self.constraint_target == "accuracy_gap" and getattr(self, "phase_", "") == (
            "fine_tune"
        )

    def _uses_heldout(self) -> bool:
        """Whether the dual steps measure the constraints on the ``constraint_split`` rows."""
        state = self._dual_state
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

    def _reference_outputs(
        self, X: np.ndarray, y_index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample loss of the dense net θ* and whether it is correct (eval mode, no grad)."""
        # θ* as a plain module, not a copy of the estimator
        module = self.module_ if self.dense_state_dict_ is None else self._dense_module()
        logits = eval_logits(module, X, self.device)  # no DataLoader: no RNG draws
        y = torch.as_tensor(y_index, device=logits.device)
        with torch.no_grad():
            losses = self.per_sample_loss(logits, y)
            correct = logits.argmax(dim=1) == y
        return (losses.cpu().numpy().astype(np.float32),
                correct.cpu().numpy().astype(np.float32))

    # ------------------------------------------------------------------------------------------
    # the data of constrained fine-tuning
    # ------------------------------------------------------------------------------------------
    def _fine_tuning_input(self, data: Any, y_index: np.ndarray) -> Any:
        """Add what the target needs from θ* and set the held-out rows of ``constraint_split``.

        ``excess_risk`` gets the dense net's per-sample losses, ``accuracy_gap`` whether θ*
        classified each sample correctly, computed once.
        """
        if not (isinstance(data, Mapping) and GROUP_KEY in data and self._constrains_fine_tuning()):
            return data
        state = self._dual_state
        codes = np.asarray(data[GROUP_KEY])
        shares = np.bincount(codes, minlength=len(self.groups_)).astype(np.float64)
        state.group_shares = shares / shares.sum()
        if self.constraint_target != "group_loss":  # the batches carry only what is used
            losses, correct = self._reference_outputs(data[INPUT_KEY], y_index)
            if self.constraint_target == "accuracy_gap":
                data = {**data, REFERENCE_CORRECT_KEY: correct}
            else:
                data = {**data, REFERENCE_LOSS_KEY: losses}
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

    # ------------------------------------------------------------------------------------------
    # divergence guard
    # ------------------------------------------------------------------------------------------
    def _diverged(self, what: str) -> DivergenceError:
        return DivergenceError(
            DIVERGED.format(
                name=type(self).__name__,
                what=what,
                epoch=len(self.history),
                phase=getattr(self, "phase_", "train"),
                multipliers=np.round(self._dual_state.multipliers, 4).tolist(),
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
        """Mean (weighted) loss, plus the Lagrangian penalty while training a constrained phase.

        The criterion runs once: its per-sample losses give the mean loss and the group terms.
        CEAG's dual signal (the batch's accuracy drops) is gathered by
        :meth:`DualAscent.on_batch_end <fairprune_sk.constrained._callback.DualAscent.on_batch_end>`,
        which receives the batch and its predictions.
        """
        losses = self.per_sample_loss(y_pred, y_true)
        constrained = (
            training and isinstance(X, Mapping) and GROUP_KEY in X and self._constraint_active()
        )
        state = self._dual_state if constrained else None
        ceag = constrained and self._targets_accuracy_gap() and REFERENCE_CORRECT_KEY in X
        if ceag:
            penalty = state.penalty_multipliers(losses.dtype, self.dual_dynamics_ == "damped")
            if penalty is not None:
                return self._checked(self._ceag_lagrangian(losses, X, *penalty))
        loss = self._mean_loss(losses, y_true, X)
        if not training:
            return loss
        self._checked(loss)
        if ceag or not constrained:
            return loss  # (CEAG with λ = 0) exactly the unconstrained loss
        accumulate = not self._uses_heldout()  # the dual step averages this run's batch losses
        if not (accumulate or bool((state.multipliers > 0).any())):
            return loss  # λ = 0 and nothing to accumulate: exactly the unconstrained loss
        # the per-group work is numpy on the batch's codes (µs; each small torch op costs 5-10)
        codes = as_numpy(X[GROUP_KEY]).astype(np.int64, copy=False)
        return self._group_lagrangian(loss, losses, X, codes, accumulate=accumulate)

    def _checked(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss``, unless its value is not finite (:class:`DivergenceError`)."""
        value = loss.item()
        if not math.isfinite(value):
            raise self._diverged(f"the training loss became {value}")
        return loss

    def _group_lagrangian(
        self,
        loss: torch.Tensor,
        losses: torch.Tensor,
        X: Mapping,
        codes: np.ndarray,
        *,
        accumulate: bool,
    ) -> torch.Tensor:
        """``J + Σ_a λ_a |J_a − J|`` on the batch (divided by ``1 + Σ λ`` when damped).

        ``J_a`` and ``J`` are the ``w``-weighted means of the group's and the batch's
        per-sample values ``e_i`` (the losses, minus θ*'s for ``excess_risk``); groups with
        ``λ_a = 0`` or absent from the batch contribute nothing. The penalty's gradient is
        that of ``Σ_i c_i ℓ_i`` with detached coefficients
        ``c_i = w_i (λ_a s_a / W_a − Σ_b λ_b s_b / W)`` (``a`` the sample's group, ``s_b`` the
        sign of ``J_b − J``, ``W_b`` and ``W`` the weights in the group and the batch), so it is
        computed without autograd, in numpy (float64; a CUDA batch's losses and codes come to
        the CPU once): one autograd node per batch instead of a dozen small ones. The returned
        value is the Lagrangian itself. With ``accumulate``, the batch's per-group
        ``[Σ w·e, Σ w]`` go to the dual state for the next dual step.
        """
        state = self._dual_state
        n_groups = len(self.groups_)
        values = as_numpy(losses).astype(np.float64)
        reference = X.get(REFERENCE_LOSS_KEY)
        if reference is not None:  # excess targets: loss minus the dense net's loss
            values = values - as_numpy(reference)
        weight = X.get(SAMPLE_WEIGHT_KEY)
        if weight is None:
            group_weight = np.bincount(codes, minlength=n_groups).astype(np.float64)
        else:
            weight = as_numpy(weight).astype(np.float64)
            group_weight = np.bincount(codes, weights=weight, minlength=n_groups)
            values = values * weight
        group_sum = np.bincount(codes, weights=values, minlength=n_groups)
        if accumulate:
            state.accumulate_sums(group_sum, group_weight)
        multipliers = state.multipliers
        penalized = (multipliers > 0) & (group_weight > 0)  # absent groups: nothing
        if not penalized.any():
            return loss  # λ = 0 on every present group: exactly the unconstrained loss
        total_weight = group_weight.sum()
        overall = group_sum.sum() / total_weight
        gap = np.zeros(n_groups)  # J_a − J where penalized, else 0
        np.divide(group_sum, group_weight, out=gap, where=penalized)
        gap = np.where(penalized, gap - overall, 0.0)
        slope = multipliers * np.sign(gap)  # 0 where not penalized, so is its table entry
        coef = (slope / np.maximum(group_weight, 1e-12) - slope.sum() / total_weight)[codes]
        if weight is not None:
            coef = coef * weight
        coef = torch.from_numpy(coef.astype(numpy_dtype(losses.dtype)))
        if not losses.is_cpu:
            coef = coef.to(losses.device, non_blocking=True)
        surrogate = torch.dot(coef, losses)
        penalty = float((multipliers * np.abs(gap)).sum())
        lagrangian = loss + surrogate + (penalty - surrogate.item())  # value: J + Σ λ_a |J_a − J|
        if self.dual_dynamics_ == "damped":
            return lagrangian / (1.0 + float(multipliers.sum()))
        return lagrangian

    def _ceag_lagrangian(
        self,
        losses: torch.Tensor,
        X: Mapping,
        multipliers: np.ndarray,
        scale: np.generic | None,
        tables: dict[int, np.ndarray],
    ) -> torch.Tensor:
        """``(J + Σ_a λ_a [(J_a − J*_a) − sg(J − J*)]) / (1 + Σ λ)`` on the batch, up to constants.

        The dense net's losses ``J*_a`` and the stop-gradient overall term are constants for θ,
        so the Lagrangian's gradient is that of one weighted sum ``Σ_i c_i ℓ_i`` of the
        per-sample ``losses`` with detached coefficients
        ``c_i = (w_i / n + λ_a w_i / W_a) / (1 + Σ λ)`` (``a`` the sample's group, ``W_a`` its
        weight in the batch; absent groups contribute nothing). This is what is returned (and
        recorded as ``train_loss``): one ``dot`` per batch, one autograd node. ``multipliers``
        are λ in the losses' dtype, ``scale`` is ``1 / (1 + Σ λ)`` under
        ``dual_dynamics="damped"`` and None otherwise, and ``tables`` caches, per batch size,
        the coefficients of every (group count, group) pair until the next dual step
        (:meth:`~fairprune_sk.constrained._callback.DualState.penalty_multipliers`).

        Every ``c_i`` is rounded as the gradient of ``(Σ_i c_i ℓ_i) / (1 + Σ λ)`` reaching
        ``ℓ_i`` in autograd is (the product of the unnormalised coefficient and the rounded
        reciprocal), so the weights are those of that formulation, bit for bit; only the
        recorded loss value may differ in its last bits.
        """
        codes = as_numpy(X[GROUP_KEY]).astype(np.int64, copy=False)
        weight = X.get(SAMPLE_WEIGHT_KEY)
        n, n_groups = codes.shape[0], multipliers.shape[0]
        if weight is None:
            table = tables.get(n)
            if table is None and (n + 1) * n_groups <= _TABLE_SIZE:
                table = tables[n] = _coefficient_table(multipliers, n, scale)
            if table is not None:  # c_i = table[W_a, a]: three numpy calls per batch
                coef = table[np.bincount(codes, minlength=n_groups)[codes], codes]
            else:
                group_weight = np.bincount(codes, minlength=n_groups).astype(multipliers.dtype)
                coef = (multipliers / np.maximum(group_weight, 1.0))[codes] + 1.0 / n
                if scale is not None:
                    coef = coef * scale
        else:
            weight = as_numpy(weight).astype(multipliers.dtype)
            group_weight = np.zeros(n_groups, dtype=multipliers.dtype)
            np.add.at(group_weight, codes, weight)
            per_sample = (multipliers / np.maximum(group_weight, 1e-12))[codes] + 1.0 / n
            coef = per_sample * weight if scale is None else (per_sample * weight) * scale
        coef = torch.from_numpy(coef)
        if not losses.is_cpu:
            coef = coef.to(losses.device, non_blocking=True)
        return torch.dot(coef, losses)


#: Largest (batch size + 1) × n_groups coefficient table CEAG caches between dual steps.
_TABLE_SIZE = 1 << 16


def _coefficient_table(multipliers: np.ndarray, n: int, scale: np.generic | None) -> np.ndarray:
    """``table[k, a] = (λ_a / max(k, 1) + 1 / n) · scale``, the unweighted CEAG coefficient of a
    sample of group ``a`` present ``k`` times in a batch of ``n`` (in ``multipliers``' dtype,
    rounded as the per-batch formula rounds; no ``scale`` when it is None)."""
    counts = np.maximum(np.arange(n + 1, dtype=multipliers.dtype), 1.0)
    table = multipliers[None, :] / counts[:, None] + 1.0 / n
    return table if scale is None else table * scale
