"""The functional evaluator: a module evaluated at chosen parameters, in eval mode.

Gradients, Hessian-vector products, eigenvalues and per-sample output gradients are taken
through ``torch.func.functional_call`` on detached leaf tensors, so the caller's parameters
never change and never receive ``.grad``. A module carrying ``torch.nn.utils.prune`` masks is
evaluated through a plain copy holding its effective (masked) weights
(:func:`fairprune_sk.pruning.unpruned_copy`); parameters are then named without ``_orig``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from .. import pruning
from .._validation import torch_generator
from ._checks import _check_class_range
from ._eigen import _EigenResult, _lanczos, _power_iteration
from ._functional import _as_logits, _batches, _fold_pruning_state, _KeptState
from ._hessian import _HessianOperator

# Per-sample gradients held at once by output_gradient_norms: chunk * n_params <= this.
_VMAP_ELEMENT_BUDGET = 2**26


class _Evaluator:
    """Evaluates a module functionally at chosen parameters, in eval mode.

    Used as a context manager: entering switches the module to eval mode, leaving restores
    every submodule's own train/eval flag and every parameter's ``.grad``, on the caller's
    module and on the plain copy of a pruned one (:class:`_KeptState`). Parameters are passed
    to ``functional_call`` as separate leaf tensors, so the module's own parameters never
    receive gradients. ``module`` is an ``nn.Module`` and ``params`` None or a mapping (the
    public functions check both); the names and shapes in ``params`` are checked here.
    """

    def __init__(self, module: nn.Module, params: Mapping[str, Any] | None = None) -> None:
        self.caller = module
        self.module = pruning.unpruned_copy(module) if pruning.is_pruned(module) else module
        own = dict(self.module.named_parameters())
        # in the caller's order; the plain copy names a pruned ``weight_orig`` ``weight``
        self.names = [
            n if n in own else n.removesuffix("_orig")
            for n, p in module.named_parameters()
            if p.requires_grad
        ]
        if not self.names:
            raise ValueError("the module has no trainable parameters")
        first = own[self.names[0]]
        self.device, self.dtype = first.device, first.dtype
        self.shapes = [own[n].shape for n in self.names]
        self.numels = [own[n].numel() for n in self.names]
        self.params = tuple(own[n].detach() for n in self.names)
        self.constants: dict[str, torch.Tensor] = {}
        if params is not None:
            self.params, self.constants = self._resolve(params, own)
        self._kept: list[_KeptState] = []

    @property
    def n_params(self) -> int:
        return sum(self.numels)

    def _resolve(
        self, params: Mapping[str, Any], own: dict[str, torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        state = _fold_pruning_state(params)
        buffers = dict(self.module.named_buffers())
        known = set(own) | set(buffers)
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValueError(
                f"params has names the module does not know: {unknown[:5]}; "
                f"expected names like {self.names[:3]}"
            )
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"params lacks the trainable parameters {missing[:5]}")
        for name, value in state.items():
            expected = (own.get(name) if name in own else buffers[name]).shape
            if value.shape != expected:
                raise ValueError(
                    f"params[{name!r}] has shape {tuple(value.shape)}, the module's "
                    f"has {tuple(expected)}"
                )
        values = tuple(
            state[n].to(device=own[n].device, dtype=own[n].dtype) for n in self.names
        )
        constants = {}
        for name, value in state.items():
            if name in self.names:
                continue
            target = own[name] if name in own else buffers[name]
            constants[name] = value.to(device=target.device, dtype=target.dtype)
        return values, constants

    def at(self, params: Mapping[str, Any]) -> _Evaluator:
        """The same module evaluated at other parameters (no further copy)."""
        other = copy.copy(self)
        own = dict(self.module.named_parameters())
        other.params, other.constants = self._resolve(params, own)
        other._kept = []
        return other

    def __enter__(self) -> _Evaluator:
        self._kept = [_KeptState(self.caller)]
        if self.module is not self.caller:
            self._kept.append(_KeptState(self.module))
        self.module.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        for kept in reversed(self._kept):
            kept.restore()
        self._kept = []

    # -- vectors ----------------------------------------------------------------------------
    def flatten(self, tensors: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
        zeros = torch.zeros
        return torch.cat(
            [
                zeros(n, device=self.device, dtype=self.dtype) if t is None else t.reshape(-1)
                for t, n in zip(tensors, self.numels, strict=True)
            ]
        )

    def unflatten(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(
            chunk.view(shape)
            for chunk, shape in zip(torch.split(flat, self.numels), self.shapes, strict=True)
        )

    def flat_params(self) -> torch.Tensor:
        return self.flatten(self.params)

    # -- forward ----------------------------------------------------------------------------
    def batch(
        self, X: np.ndarray, y: np.ndarray | None, idx: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = torch.as_tensor(X[idx], dtype=self.dtype, device=self.device)
        t = None if y is None else torch.as_tensor(y[idx], device=self.device)
        return x, t

    def logits(self, params: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
        mapping = dict(zip(self.names, params, strict=True))
        mapping.update(self.constants)
        return _as_logits(functional_call(self.module, mapping, (x,)))

    def loss_sum(self, params: tuple[torch.Tensor, ...], x: torch.Tensor, t: torch.Tensor):
        logits = self.logits(params, x)
        _check_class_range(int(t.max()), logits.shape[1])
        return F.cross_entropy(logits, t, reduction="sum")

    def predict_logits(self, X: np.ndarray, batch_size: int) -> torch.Tensor:
        """Logits of all samples (on CPU)."""
        out = []
        with torch.no_grad():
            for idx in _batches(np.arange(len(X)), batch_size):
                x, _ = self.batch(X, None, idx)
                out.append(self.logits(self.params, x).cpu())
        return torch.cat(out) if out else torch.empty(0, 0)

    # -- derivatives ------------------------------------------------------------------------
    def _leaves(self) -> list[torch.Tensor]:
        return [p.detach().requires_grad_(True) for p in self.params]

    def gradient(self, X: np.ndarray, y: np.ndarray, idx: np.ndarray, batch_size: int):
        """Flat ``∇_θ J(θ; D)`` over the samples ``idx`` (mean loss), one backward per batch."""
        total = torch.zeros(self.n_params, device=self.device, dtype=self.dtype)
        with torch.enable_grad():
            for b in _batches(idx, batch_size):
                x, t = self.batch(X, y, b)
                leaves = self._leaves()
                grads = torch.autograd.grad(self.loss_sum(leaves, x, t), leaves, allow_unused=True)
                total += self.flatten(grads)
        return total / max(len(idx), 1)

    def hvp(
        self, X: np.ndarray, y: np.ndarray, idx: np.ndarray, v: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        """Flat ``H v`` with ``H = ∇²_θ J(θ; D)`` over the samples ``idx`` (double backward)."""
        return _HessianOperator(self, X, y, idx, batch_size, cache_bytes=0)(v)

    def output_grad_norms(self, X: np.ndarray, batch_size: int, output: str) -> np.ndarray:
        """‖∇_θ f(x)‖ per sample, ``f`` the predicted-class probability or logit margin."""
        names = self.names

        def f_single(params, x, onehot):
            mapping = dict(zip(names, params, strict=True))
            mapping.update(self.constants)
            logits = _as_logits(functional_call(self.module, mapping, (x.unsqueeze(0),)))[0]
            if output == "proba":
                return (torch.softmax(logits, dim=0) * onehot).sum()
            others = logits.masked_fill(onehot.bool(), float("-inf")).max()
            return (logits * onehot).sum() - others

        chunk = max(1, min(batch_size, _VMAP_ELEMENT_BUDGET // max(self.n_params, 1)))
        per_sample_grad = vmap(grad(f_single), in_dims=(None, 0, 0), chunk_size=chunk)
        norms = []
        for idx in _batches(np.arange(len(X)), batch_size):
            x, _ = self.batch(X, None, idx)
            with torch.no_grad():
                logits = self.logits(self.params, x)
            onehot = F.one_hot(logits.argmax(dim=1), logits.shape[1]).to(self.dtype)
            grads = per_sample_grad(self.params, x, onehot)
            squared = sum(g.reshape(len(idx), -1).pow(2).sum(dim=1) for g in grads)
            norms.append(squared.sqrt().double().cpu())
        return torch.cat(norms).numpy() if norms else np.empty(0)

    def top_eigenvalue(
        self,
        X: np.ndarray,
        y: np.ndarray,
        idx: np.ndarray,
        *,
        method: str,
        max_iter: int,
        tol: float,
        seed: Any,
        batch_size: int,
        operator: _HessianOperator | None = None,
    ) -> _EigenResult:
        """Top eigenvalue of the loss Hessian on rows ``idx``; ``seed`` is a ``random_state``
        of :func:`~fairprune_sk._validation.torch_generator` (an int is the torch seed)."""
        generator = torch_generator(seed)
        v0 = torch.randn(self.n_params, generator=generator, dtype=torch.float64)
        v0 = v0.to(device=self.device, dtype=self.dtype)
        if operator is None:
            operator = _HessianOperator(self, X, y, idx, batch_size)
        solver = _lanczos if method == "lanczos" else _power_iteration
        return solver(operator, v0, max_iter=max_iter, tol=tol)
