"""Why pruning hurts some groups more: the factors of Theorem 1, measured per group.

Tran, Fioretto, Kim and Naidu, *Pruning has a disparate impact on model accuracy*, NeurIPS 2022
(arXiv 2205.13574), bound the group excess risk of eq. (2),
``R(a) = J(θ̂; D_a) − J(θ*; D_a)`` (θ* dense, θ̂ pruned, ``J`` the mean cross-entropy), by a
second-order Taylor expansion around the dense parameters (Theorem 1)::

    R(a) ≤ ‖g_a‖ · ‖θ̂ − θ*‖  +  ½ λ(H_a) · ‖θ̂ − θ*‖²  +  O(‖θ̂ − θ*‖³)

with ``g_a = ∇_θ J(θ*; D_a)`` the group gradient and ``λ(H_a)`` the largest eigenvalue of the
group Hessian ``H_a = ∇²_θ J(θ*; D_a)``. Proposition 1 relates ``‖g_a‖`` to the group's error and
size; Theorem 2 relates ``λ(H_a)`` to how close the group's samples lie to the decision boundary,
``f(x)(1 − f(x))`` for a binary net.

This module measures those factors:

- :func:`group_gradient_norms` – ``‖g_a‖`` for every group, accumulated over minibatches;
- :func:`hessian_vector_product` – ``H v`` by double backward over minibatches, never ``H``;
- :func:`top_hessian_eigenvalue` – ``λ(H_a)`` by Lanczos (default) or power iteration on
  Hessian-vector products;
- :func:`boundary_closeness` – ``f(1 − f)`` per sample (``p_max(1 − p_max)`` for several classes);
- :func:`output_gradient_norms` – ``‖∇_θ f(x)‖`` per sample, by ``torch.func.vmap(grad)``;
- :class:`GroupDiagnostics` – all of them per group for a fitted net, next to the measured
  excess risk and the Theorem 1 bound, with rank correlations and a plot.

The numerical functions take any ``torch.nn.Module`` that outputs logits. They compute in eval
mode (dropout off, batch norm on its running statistics), restore the caller's train/eval
flags, leave no ``.grad`` on the module's parameters and never change its parameters. A module
carrying ``torch.nn.utils.prune`` masks is evaluated at its effective (masked) weights, through a
plain copy without the pruning hooks; parameters are then named without the ``_orig`` suffix.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils import check_random_state
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.utils import prune as torch_prune

from . import pruning
from .metrics import ExcessRiskFrame, encode_labels, group_codes, group_mean
from .metrics._bootstrap import check_bootstrap_params

__all__ = [
    "GroupDiagnostics",
    "boundary_closeness",
    "group_gradient_norms",
    "hessian_vector_product",
    "output_gradient_norms",
    "top_hessian_eigenvalue",
]

#: Eigenvalue solvers accepted by :func:`top_hessian_eigenvalue`.
EIGEN_METHODS = ("lanczos", "power")

#: Outputs ``f`` accepted by :func:`output_gradient_norms`.
OUTPUTS = ("proba", "margin")

#: Factors whose rank correlation with the excess risk :meth:`GroupDiagnostics.correlations`
#: reports (those present in ``by_group``).
CORRELATION_FACTORS = (
    "gradient_norm",
    "hessian_max_eig",
    "boundary_closeness",
    "input_grad_norm",
    "bound",
    "taylor_estimate",
    "count",
)

#: Audit columns of ``GroupDiagnostics.by_group`` without a dense reference (the net is its
#: own θ*, so nothing is pruned and no excess risk exists).
_OWN_REFERENCE_COLUMNS = ("count", "loss_dense", "accuracy_dense")

# Per-sample gradients held at once by output_gradient_norms: chunk * n_params <= this.
_VMAP_ELEMENT_BUDGET = 2**26

# Bytes of first-order autograd graph an eigen-solver keeps between Hessian-vector products
# (saved activations of the cached batches); batches past it are recomputed at each product.
_HVP_CACHE_BYTES = 2**28


# ============================================================================================
# validation helpers
# ============================================================================================
def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def _check_real(value: Any, name: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value >= minimum:
        raise ValueError(f"{name} must be a real number >= {minimum}; got {value!r}")
    return float(value)


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def _as_input_array(X: Any) -> np.ndarray:
    """``X`` as a numeric ndarray of shape (n_samples, ...), without copying float data."""
    if isinstance(X, Mapping):
        raise ValueError(
            "X must be an array-like of shape (n_samples, n_features) or (n_samples, C, H, W); "
            "got a mapping"
        )
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    elif isinstance(X, pd.DataFrame | pd.Series):
        X = X.to_numpy()
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(
            "X must have shape (n_samples, n_features) or (n_samples, C, H, W); "
            f"got an array of shape {X.shape}"
        )
    if not np.issubdtype(X.dtype, np.floating):
        try:
            X = X.astype(np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "X must be numeric (preprocess categorical columns first); "
                f"could not convert its dtype {X.dtype} to float"
            ) from exc
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity")
    return X


def _as_class_indices(y: Any, n_samples: int) -> np.ndarray:
    """Integer class indices ``0 .. n_classes - 1`` (the core functions take these)."""
    y = np.asarray(y.detach().cpu() if torch.is_tensor(y) else y)
    if y.ndim != 1:
        y = y.ravel()
    if len(y) != n_samples:
        raise ValueError(f"y has {len(y)} samples but X has {n_samples}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        raise ValueError(
            f"y must hold integer class indices 0 .. n_classes - 1; got dtype {y.dtype} "
            "(GroupDiagnostics maps labels of net.classes_ for you)"
        )
    y = y.astype(np.int64)
    if n_samples and y.min() < 0:
        raise ValueError(f"y must hold class indices >= 0; got {int(y.min())}")
    return y


def _as_group_codes(groups: Any, n_samples: int) -> tuple[np.ndarray, int]:
    codes = np.asarray(groups)
    if codes.ndim != 1 or len(codes) != n_samples:
        raise ValueError(
            f"groups must be 1-D with one code per sample; got shape {codes.shape} "
            f"for {n_samples} samples"
        )
    if not np.issubdtype(codes.dtype, np.integer) or (n_samples and codes.min() < 0):
        raise ValueError(
            "groups must hold integer group codes 0 .. n_groups - 1 "
            "(see fairprune_sk.metrics.group_codes to encode labels)"
        )
    n_groups = int(codes.max()) + 1 if n_samples else 0
    return codes.astype(np.int64), n_groups


# ============================================================================================
# a plain, functional view of a module
# ============================================================================================
def _pruning_hooks(module: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
    """(qualified module name, submodule, tensor name) of every ``torch.nn.utils.prune`` hook."""
    for prefix, sub in module.named_modules():
        for hook in sub._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                yield prefix, sub, hook._tensor_name


def _plain_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` without pruning hooks, holding the masked (effective) weights."""
    return pruning.unpruned_copy(module)


def _trainable_names(module: nn.Module) -> list[str]:
    """Names of the trainable parameters, ``*_orig`` of pruned tensors named without suffix."""
    renamed = {}
    for prefix, _, name in _pruning_hooks(module):
        qualified = f"{prefix}.{name}" if prefix else name
        renamed[qualified + "_orig"] = qualified
    return [renamed.get(n, n) for n, p in module.named_parameters() if p.requires_grad]


def _fold_pruning_state(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A state_dict with ``name_orig`` / ``name_mask`` pairs folded into ``name``."""
    plain: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state:
            continue
        tensor = torch.as_tensor(value)
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state:
            base = key[: -len("_orig")]
            mask = torch.as_tensor(state[base + "_mask"])
            plain[base] = tensor.detach() * mask.to(dtype=tensor.dtype, device=tensor.device)
        else:
            plain[key] = tensor.detach()
    return plain


def _as_logits(out: Any) -> torch.Tensor:
    """Module output as (batch, n_classes) logits; one output column is a binary logit."""
    if isinstance(out, tuple | list):
        out = out[0]
    if not torch.is_tensor(out):
        raise ValueError(f"the module must return a tensor of logits; got {type(out).__name__}")
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2:
        raise ValueError(
            f"the module must return logits of shape (batch, n_classes); got {tuple(out.shape)}"
        )
    if out.shape[1] == 1:  # a single logit z: softmax([0, z]) = [1 - σ(z), σ(z)]
        out = torch.cat([torch.zeros_like(out), out], dim=1)
    return out


class _KeptState:
    """The caller's train/eval flag of every submodule and ``.grad`` of every parameter.

    :meth:`restore` puts both back as they were found: each submodule gets its own flag back
    (not its parent's, as ``module.train(flag)`` would give), a ``.grad`` that was None is None
    again and an existing gradient tensor is the same object again. The numerical code never
    accumulates into a parameter's ``.grad`` (it differentiates detached copies with
    ``torch.autograd.grad``), so the tensor also keeps its values.
    """

    def __init__(self, module: nn.Module) -> None:
        self.modes = [(m, m.training) for m in module.modules()]
        self.grads = [(p, p.grad) for p in module.parameters()]

    def restore(self) -> None:
        for m, training in self.modes:
            m.training = training
        for p, gradient in self.grads:
            if p.grad is not gradient:
                p.grad = gradient


@dataclass
class _EigenResult:
    """Outcome of an eigenvalue solver.

    Attributes
    ----------
    value : float
        The eigenvalue estimate.
    n_iter : int
        Hessian-vector products used.
    converged : bool
        Whether the stopping criterion was met within ``max_iter``.
    """

    value: float
    n_iter: int
    converged: bool


class _Evaluator:
    """Evaluates a module functionally at chosen parameters, in eval mode.

    Used as a context manager: entering switches the module to eval mode, leaving restores
    every submodule's own train/eval flag and every parameter's ``.grad``, on the caller's
    module and on the plain copy of a pruned one (:class:`_KeptState`). Parameters are passed
    to ``functional_call`` as separate leaf tensors, so the module's own parameters never
    receive gradients.
    """

    def __init__(self, module: nn.Module, params: Mapping[str, Any] | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
        self.caller = module
        self.names = _trainable_names(module)
        if not self.names:
            raise ValueError("the module has no trainable parameters")
        self.module = _plain_copy(module) if pruning.is_pruned(module) else module
        own = dict(self.module.named_parameters())
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
        if not isinstance(params, Mapping):
            raise TypeError(
                "params must be a mapping of parameter names to tensors (a state_dict); "
                f"got {type(params).__name__}"
            )
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
        if int(t.max()) >= logits.shape[1]:
            raise ValueError(
                f"y holds class index {int(t.max())} but the module outputs "
                f"{logits.shape[1]} classes"
            )
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
        seed: int | None,
        batch_size: int,
        operator: _HessianOperator | None = None,
    ) -> _EigenResult:
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        v0 = torch.randn(self.n_params, generator=generator, dtype=torch.float64)
        v0 = v0.to(device=self.device, dtype=self.dtype)
        if operator is None:
            operator = _HessianOperator(self, X, y, idx, batch_size)
        solver = _lanczos if method == "lanczos" else _power_iteration
        return solver(operator, v0, max_iter=max_iter, tol=tol)


class _HessianOperator:
    """``v ↦ H v`` over the samples ``idx``, keeping the first-order graph between products.

    A Hessian-vector product is ``H v = ∇_θ (∇_θ J · v)``: a forward pass, a backward pass that
    records its own graph (``create_graph=True``), and a second backward through that graph.
    Only the last part depends on ``v``. The first product builds the graph of the summed
    gradient ``Σ_b ∇_θ J_b`` over as many batches as fit in ``cache_bytes`` and keeps it, so
    every later product of an eigen-solver is one backward call through the kept graph
    (``autograd.grad(g, θ, grad_outputs=v)``; ``H`` is symmetric). Batches past the budget are
    recomputed by double backward at each product. Measured (``benchmarks/bench_hessian.py``,
    Adult, ``MLP(64, 64)``, one thread): 1.7 gradient passes per product with the graph kept,
    2.9 recomputed.

    The kept graph holds the saved activations of the cached samples and a few
    parameter-sized tensors; its size is measured on the first batch (saved-tensor hooks)
    and the number of cached batches chosen from it. The gradient ``∇_θ J`` itself comes free
    with the graph (:meth:`gradient`).
    """

    def __init__(
        self,
        ev: _Evaluator,
        X: np.ndarray,
        y: np.ndarray,
        idx: np.ndarray,
        batch_size: int,
        cache_bytes: int | None = None,
    ) -> None:
        self.ev, self.X, self.y, self.idx = ev, X, y, np.asarray(idx)
        self.batch_size = batch_size
        self.cache_bytes = _HVP_CACHE_BYTES if cache_bytes is None else cache_bytes
        self.n = max(len(self.idx), 1)
        self._built = self._checked = False

    def _loss(self, leaves: list[torch.Tensor], b: np.ndarray) -> torch.Tensor:
        x, t = self.ev.batch(self.X, self.y, b)
        logits = self.ev.logits(leaves, x)
        if not self._checked:  # once, on the host: no batch waits on a device-to-host copy
            top = int(self.y[self.idx].max())
            if top >= logits.shape[1]:
                raise ValueError(
                    f"y holds class index {top} but the module outputs {logits.shape[1]} "
                    "classes"
                )
            self._checked = True
        return F.cross_entropy(logits, t, reduction="sum")

    def _first_order(self, leaves, b, *, create_graph: bool) -> list[torch.Tensor | None]:
        return list(
            torch.autograd.grad(
                self._loss(leaves, b), leaves, create_graph=create_graph, allow_unused=True
            )
        )

    @staticmethod
    def _accumulate(total: list, terms) -> None:
        for j, term in enumerate(terms):
            if term is not None:
                total[j] = term if total[j] is None else total[j] + term

    def _build(self) -> None:
        """Keep the gradient graph of the first batches, up to ``cache_bytes``."""
        ev = self.ev
        self.leaves = ev._leaves()
        self.kept: list[torch.Tensor | None] = [None] * len(self.leaves)
        batches = list(_batches(self.idx, self.batch_size))
        n_keep = 0
        if batches and self.cache_bytes > 0:
            own = {p.untyped_storage().data_ptr() for p in ev.params}
            saved: dict[int, int] = {}

            def pack(t: torch.Tensor) -> torch.Tensor:
                storage = t.untyped_storage()
                if storage.data_ptr() not in own:
                    saved[storage.data_ptr()] = storage.nbytes()
                return t

            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, _same):
                grads = self._first_order(self.leaves, batches[0], create_graph=True)
            per_batch = sum(saved.values()) + 4 * ev.n_params * ev.params[0].element_size()
            n_keep = int(self.cache_bytes // max(per_batch, 1))
            self.batch_bytes = per_batch
            if n_keep > 0:
                self._accumulate(self.kept, grads)
            del grads
        with torch.enable_grad():
            for b in batches[1:n_keep]:
                self._accumulate(
                    self.kept, self._first_order(self.leaves, b, create_graph=True)
                )
        self.rest = batches[n_keep:] if n_keep > 0 else batches
        self.n_kept_batches = len(batches) - len(self.rest)
        self._gradient: torch.Tensor | None = None
        self._built = True

    def gradient(self) -> torch.Tensor:
        """Flat ``∇_θ J(θ; D)`` (mean loss over ``idx``): free on the kept batches."""
        if not self._built:
            self._build()
        if self._gradient is None:
            total = [None if g is None else g.detach() for g in self.kept]
            with torch.enable_grad():
                for b in self.rest:
                    grads = self._first_order(self.ev._leaves(), b, create_graph=False)
                    self._accumulate(total, grads)
            self._gradient = self.ev.flatten(tuple(total)) / self.n
        return self._gradient

    @staticmethod
    def _vjp(grads, leaves, vs, *, retain_graph: bool) -> list[torch.Tensor | None]:
        """``∂(Σ g·v)/∂θ`` for the gradient entries that depend on θ (others add zero)."""
        pairs = [(g, u) for g, u in zip(grads, vs, strict=True)
                 if g is not None and g.requires_grad]
        if not pairs:  # the loss is linear in every parameter
            return [None] * len(leaves)
        return list(torch.autograd.grad(
            [g for g, _ in pairs], leaves, grad_outputs=[u for _, u in pairs],
            retain_graph=retain_graph, allow_unused=True,
        ))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        ev = self.ev
        if not self._built:
            self._build()
        vs = ev.unflatten(v.to(device=ev.device, dtype=ev.dtype))
        with torch.enable_grad():
            total = self._vjp(self.kept, self.leaves, vs, retain_graph=True)
            for b in self.rest:
                leaves = ev._leaves()
                grads = self._first_order(leaves, b, create_graph=True)
                self._accumulate(total, self._vjp(grads, leaves, vs, retain_graph=False))
        return ev.flatten(tuple(total)) / self.n


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _batches(idx: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(idx), batch_size):
        yield idx[start : start + batch_size]


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


# ============================================================================================
# eigenvalue solvers on a symmetric operator
# ============================================================================================
def _power_iteration(operator, v0: torch.Tensor, *, max_iter: int, tol: float) -> _EigenResult:
    """Largest-magnitude eigenvalue (with its sign) by power iteration.

    Stops when the Rayleigh quotient changes by at most ``tol`` relative to its size.
    """
    v = v0 / v0.norm()
    value = math.nan
    for k in range(1, max_iter + 1):
        w = operator(v)
        new = _dot(v, w)  # Rayleigh quotient vᵀHv, ‖v‖ = 1
        w_norm = float(w.norm())
        if w_norm == 0.0:  # H v = 0: v is in the null space, H may be zero
            return _EigenResult(0.0, k, True)
        if not math.isnan(value) and abs(new - value) <= tol * abs(new):
            return _EigenResult(new, k, True)
        value = new
        v = w / w_norm
    return _EigenResult(value, max_iter, False)


def _lanczos(operator, v0: torch.Tensor, *, max_iter: int, tol: float) -> _EigenResult:
    """Largest (algebraic) eigenvalue by the Lanczos three-term recurrence.

    Only three vectors are kept (no full reorthogonalisation: the extreme Ritz value converges
    first and loss of orthogonality only duplicates converged values). Stops when the residual
    ``‖H y − θ y‖ = β_{k+1} |s_k|`` of the top Ritz pair is at most ``tol · |θ|``, which bounds
    the error of θ by ``tol · |θ|`` (Kahan–Parlett).
    """
    v = v0 / v0.norm()
    v_prev = torch.zeros_like(v)
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    theta = math.nan
    scale = 0.0
    for k in range(1, max_iter + 1):
        w = operator(v)
        alpha = _dot(w, v)
        w = w - alpha * v - beta * v_prev
        w = w - _dot(w, v) * v  # local reorthogonalisation against rounding
        beta_next = float(w.norm())
        alphas.append(alpha)
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        ritz, vectors = np.linalg.eigh(T)
        theta = float(ritz[-1])
        residual = beta_next * abs(float(vectors[-1, -1]))
        scale = max(scale, abs(alpha), beta_next, float(np.abs(ritz).max()))
        if residual <= tol * abs(theta) or beta_next <= 1e-12 * max(scale, 1e-300):
            return _EigenResult(theta, k, True)
        betas.append(beta_next)
        v_prev, v, beta = v, w / beta_next, beta_next
    return _EigenResult(theta, max_iter, False)


# ============================================================================================
# public numerical core
# ============================================================================================
def group_gradient_norms(
    module: nn.Module,
    X: Any,
    y: Any,
    groups: Any,
    *,
    batch_size: int = 1024,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Norms of the group gradients ``‖g_a‖ = ‖∇_θ J(θ; D_a)‖`` (Theorem 1, Proposition 1).

    ``J(θ; D_a)`` is the mean cross-entropy over the samples of group ``a``. Each group's
    gradient is accumulated over minibatches of that group only (sum of per-sample losses,
    divided by ``n_a`` at the end): one backward per batch, one pass over the data in all, and
    never more than one batch's graph and one gradient vector in memory.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs logits of shape (batch, n_classes) (one column: a binary logit).
    X : array-like of shape (n_samples, ...)
        Inputs, already preprocessed; cast to the module's dtype batch by batch.
    y : array-like of shape (n_samples,)
        Integer class indices ``0 .. n_classes - 1``.
    groups : array-like of shape (n_samples,)
        Integer group codes ``0 .. n_groups - 1``.
    batch_size : int, default=1024
        Samples per forward/backward pass.
    params : mapping of str to Tensor, optional
        Point θ at which to differentiate, e.g. the dense reference ``net.dense_state_dict_``;
        a state_dict with plain names (buffers in it are used too). The module's current
        (effective) parameters if None.

    Returns
    -------
    ndarray of shape (n_groups,)
        ``‖g_a‖`` per group code; NaN for a code without samples.

    Examples
    --------
    >>> import torch
    >>> module = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(10, 3).numpy(), [0, 1] * 5
    >>> group_gradient_norms(module, X, y, [0] * 6 + [1] * 4).shape
    (2,)
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    X = _as_input_array(X)
    y = _as_class_indices(y, len(X))
    codes, n_groups = _as_group_codes(groups, len(X))
    norms = np.full(n_groups, np.nan)
    with _Evaluator(module, params) as ev:
        for g in range(n_groups):
            idx = np.flatnonzero(codes == g)
            if len(idx):
                norms[g] = float(ev.gradient(X, y, idx, batch_size).double().norm())
    return norms


def hessian_vector_product(
    module: nn.Module,
    X: Any,
    y: Any,
    vector: torch.Tensor,
    *,
    batch_size: int = 1024,
    params: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Hessian-vector product ``H v`` with ``H = ∇²_θ J(θ; D)``, never forming ``H``.

    Double backward per minibatch: ``H v = ∇_θ (∇_θ J · v)``, summed over batches and divided
    by the number of samples, so the result does not depend on ``batch_size`` (up to rounding).
    One product costs about three gradient passes over ``X``; repeated products on the same
    data (an eigen-solver) are cheaper through :func:`top_hessian_eigenvalue`, which keeps the
    first-order graph between them.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs logits.
    X : array-like of shape (n_samples, ...)
        Inputs of the data set ``D`` (e.g. one group ``D_a``).
    y : array-like of shape (n_samples,)
        Integer class indices.
    vector : Tensor of shape (n_params,)
        Flat vector over the trainable parameters, in the order of
        ``module.named_parameters()`` (a pruned ``weight_orig`` stands for ``weight``).
    batch_size : int, default=1024
        Samples per pass.
    params : mapping of str to Tensor, optional
        Point θ of the Hessian; the module's current parameters if None.

    Returns
    -------
    Tensor of shape (n_params,)
        ``H v``, on the module's device and in its dtype.
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    X = _as_input_array(X)
    y = _as_class_indices(y, len(X))
    with _Evaluator(module, params) as ev:
        vector = torch.as_tensor(vector)
        if vector.ndim != 1 or vector.numel() != ev.n_params:
            raise ValueError(
                f"vector must be 1-D with one entry per trainable parameter ({ev.n_params}); "
                f"got shape {tuple(vector.shape)}"
            )
        if len(X) == 0:
            raise ValueError("X has no samples")
        return ev.hvp(X, y, np.arange(len(X)), vector, batch_size)


def top_hessian_eigenvalue(
    module: nn.Module,
    X: Any,
    y: Any,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    random_state: Any = None,
    batch_size: int = 1024,
    params: Mapping[str, Any] | None = None,
    method: str = "lanczos",
) -> float:
    """Top eigenvalue ``λ(H)`` of the loss Hessian on ``(X, y)`` (``λ(H_a)`` of Theorem 1).

    Iterates on Hessian-vector products (:func:`hessian_vector_product`); the Hessian is never
    formed. The first product builds the gradient's autograd graph (a forward pass and a
    backward pass with ``create_graph``) and keeps it for the later ones, up to 256 MiB of saved
    activations; batches beyond that are recomputed at every product. Measured cost
    (``benchmarks/bench_hessian.py``, Adult 32,561 × 105, ``MLP(64, 64)``, one torch thread,
    process CPU time): **1.7 full gradient passes per iteration** with the graph kept, against
    3.3 for double backward recomputed at every product (the cost before); memory: the kept
    graph plus a few parameter vectors.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs logits.
    X : array-like of shape (n_samples, ...)
        The data set, e.g. one group's samples ``D_a``.
    y : array-like of shape (n_samples,)
        Integer class indices.
    max_iter : int, default=100
        Most Hessian-vector products.
    tol : float, default=1e-4
        Relative accuracy: Lanczos stops when the residual of its top Ritz pair is below
        ``tol · |λ|`` (which bounds the error of λ by the same amount); power iteration when
        the Rayleigh quotient changes by less than ``tol · |λ|``. ``tol=0`` runs ``max_iter``.
    random_state : int, RandomState or None, default=None
        Seeds the starting vector.
    batch_size : int, default=1024
        Samples per pass.
    params : mapping of str to Tensor, optional
        Point θ of the Hessian (e.g. the dense reference θ*); the module's current
        parameters if None.
    method : {"lanczos", "power"}, default="lanczos"
        ``"lanczos"`` returns the largest *algebraic* eigenvalue, the paper's
        ``λ(H) = λ_max``. ``"power"`` (power iteration) returns the eigenvalue of largest
        *magnitude*, with its sign; near a minimum the Hessian is dominated by its positive
        part and both agree, but at a saddle or far from convergence a large negative
        eigenvalue can win.

    Returns
    -------
    float
        The eigenvalue estimate. A :class:`~sklearn.exceptions.ConvergenceWarning` is issued
        when ``tol`` was not reached within ``max_iter``.

    Notes
    -----
    Power iteration converges linearly with rate ``|λ₂/λ₁|``; Lanczos needs far fewer
    products for the same accuracy (it is optimal among Krylov methods) and keeps only three
    vectors, without reorthogonalisation.
    """
    max_iter = _check_int(max_iter, "max_iter", 1)
    tol = _check_real(tol, "tol", 0.0)
    batch_size = _check_int(batch_size, "batch_size", 1)
    method = _check_choice(method, "method", EIGEN_METHODS)
    X = _as_input_array(X)
    y = _as_class_indices(y, len(X))
    if len(X) == 0:
        raise ValueError("X has no samples")
    seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    with _Evaluator(module, params) as ev:
        result = ev.top_eigenvalue(
            X, y, np.arange(len(X)), method=method, max_iter=max_iter, tol=tol, seed=seed,
            batch_size=batch_size,
        )
    _warn_if_not_converged(result, max_iter, tol, "")
    return result.value


def _warn_if_not_converged(
    result: _EigenResult, max_iter: int, tol: float, where: str, stacklevel: int = 3
) -> None:
    if not result.converged and tol > 0:
        warnings.warn(
            f"the top Hessian eigenvalue{where} did not reach tol={tol} in max_iter={max_iter} "
            f"Hessian-vector products (estimate {result.value:.6g}); increase max_iter",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


def boundary_closeness(proba: Any) -> np.ndarray:
    """Closeness of each sample to the decision boundary (Theorem 2).

    Binary nets: ``f(x)(1 − f(x))`` with ``f(x) = P(class 1 | x)``; it is 1/4 on the boundary
    and tends to 0 far from it. Several classes: ``p_max(1 − p_max)`` with ``p_max`` the
    largest class probability. For two classes ``p_max`` is ``f`` or ``1 − f``, so both
    definitions coincide.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Class probabilities (rows summing to one), or ``P(class 1)`` of a binary model.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> boundary_closeness([[0.5, 0.5], [0.9, 0.1]]).round(2)
    array([0.25, 0.09])
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1:
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(
            "proba must have shape (n_samples, n_classes) with n_classes >= 2, or "
            f"(n_samples,) for P(class 1); got {proba.shape}"
        )
    if proba.size and (np.nanmin(proba) < -1e-6 or np.nanmax(proba) > 1 + 1e-6):
        raise ValueError(
            "proba must hold probabilities in [0, 1] (pass predict_proba, not logits); "
            f"got values in [{np.nanmin(proba):.3g}, {np.nanmax(proba):.3g}]"
        )
    top = proba.max(axis=1)
    return top * (1.0 - top)


def output_gradient_norms(
    module: nn.Module,
    X: Any,
    *,
    batch_size: int = 1024,
    params: Mapping[str, Any] | None = None,
    output: str = "proba",
) -> np.ndarray:
    """Per-sample norm of the gradient of the model output wrt the parameters, ``‖∇_θ f(x)‖``.

    For cross-entropy the chain rule gives ``∇_θ ℓ(x, y) = J_z(x)ᵀ (p(x) − e_y)``: each sample's
    loss gradient is its error times the sensitivity of the output to the parameters, the two
    ingredients of Proposition 1. This function measures the second.

    Parameters
    ----------
    module : torch.nn.Module
        Outputs logits.
    X : array-like of shape (n_samples, ...)
        Inputs.
    batch_size : int, default=1024
        Samples per vectorised pass (``torch.func.vmap(grad)``); per-sample gradients are
        further chunked so that at most about 64M gradient entries are held at once, which
        keeps CNN-sized modules within memory.
    params : mapping of str to Tensor, optional
        Point θ; the module's current parameters if None.
    output : {"proba", "margin"}, default="proba"
        ``"proba"``: ``f`` is the probability of the predicted class (for a binary net
        ``‖∇_θ P(class 1)‖``, since the two class probabilities have opposite gradients).
        ``"margin"``: ``f`` is the logit margin ``z_ŷ − max_{k≠ŷ} z_k``.

    Returns
    -------
    ndarray of shape (n_samples,)

    Notes
    -----
    The module's forward must work on single samples under ``torch.func.vmap`` (no
    ``.item()`` or data-dependent control flow); standard layers, batch norm in eval mode
    and dropout (off in eval mode) do.
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    output = _check_choice(output, "output", OUTPUTS)
    X = _as_input_array(X)
    with _Evaluator(module, params) as ev:
        return ev.output_grad_norms(X, batch_size, output)


# ============================================================================================
# GroupDiagnostics
# ============================================================================================
def _module_of(net: Any, name: str) -> nn.Module:
    if isinstance(net, nn.Module):
        return net
    module = getattr(net, "module_", None)
    if not isinstance(module, nn.Module):
        raise NotFittedError(
            f"{name} must be a fitted skorch net (with module_) or a torch.nn.Module; "
            f"{type(net).__name__} has no fitted module_ (call fit first)"
        )
    return module


def _state_of(reference: Any) -> Mapping[str, Any]:
    """Dense parameters θ* from a fitted net, a module or a state_dict."""
    if isinstance(reference, Mapping):
        return reference
    module = _module_of(reference, "reference")
    return _fold_pruning_state(module.state_dict())


def _label(key: Any) -> str:
    return ", ".join(map(str, key)) if isinstance(key, tuple) else str(key)


class GroupDiagnostics:
    """Per-group factors of pruning's disparate impact (Theorems 1–2, Proposition 1).

    Everything is computed once, in the constructor (like fairlearn's ``MetricFrame``);
    ``by_group``, ``correlations`` and ``plot`` only read the results.

    The per-group counts, losses, accuracies and the excess risk ``R(a)`` are those of
    :class:`~fairprune_sk.ExcessRiskFrame` (the package's one audit table, built from the two
    nets' outputs with :meth:`~fairprune_sk.ExcessRiskFrame.from_outputs`), in its column
    names; the factors of Theorem 1 are added beside them.

    Gradients, Hessian eigenvalues, boundary closeness and output gradients are measured at
    the dense parameters θ*, the expansion point of Theorem 1: the net's dense reference when
    it was pruned (``net.dense_state_dict_``) or ``reference`` when given, else the net's own
    parameters (an unpruned net is its own θ*).

    The caller's module is left as it was found: every submodule's train/eval flag and every
    parameter's ``.grad`` (None stays None, an existing gradient keeps its values) are restored,
    and parameters are never changed.

    Parameters
    ----------
    net : fitted skorch net or torch.nn.Module
        Typically a pruned :class:`~fairprune_sk.PrunableNetClassifier` (θ̂); its ``module_``
        must output logits (``criterion=nn.CrossEntropyLoss``).
    X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        Evaluation data, already preprocessed (numpy, pandas or tensor).
    y : array-like of shape (n_samples,)
        True labels among ``net.classes_`` (class indices if the net has no ``classes_``).
    sensitive_features : array-like, Series or DataFrame of shape (n_samples,) or (n_samples, k)
        Group membership; several columns give intersectional groups (a ``MultiIndex``).
    reference : fitted net, torch.nn.Module or state_dict, optional
        The dense net θ*, overriding ``net.dense_state_dict_``; same architecture as ``net``.
    max_iter : int, default=100
        Most Hessian-vector products per group for ``λ(H_a)``.
    tol : float, default=1e-4
        Relative accuracy of ``λ(H_a)`` (see :func:`top_hessian_eigenvalue`).
    batch_size : int, default=1024
        Samples per pass.
    random_state : int, RandomState or None, default=None
        Seeds the eigen-solvers' starting vectors and the bootstrap resamples.
    eig_method : {"lanczos", "power"}, default="lanczos"
        Solver for ``λ(H_a)``; see :func:`top_hessian_eigenvalue`.
    n_boot : int >= 1, optional
        Bootstrap resamples of the evaluation rows for intervals of the audit columns, as in
        :class:`~fairprune_sk.ExcessRiskFrame` (then ``by_group`` gains
        ``<column>_ci_low`` / ``<column>_ci_high`` for ``excess_risk``,
        ``excess_accuracy_gap`` and ``accuracy_drop``, and ``frame.by_group_ci`` holds all).
    ci_quantiles : sequence of float in (0, 1), optional
        Quantiles of the intervals; ``(0.025, 0.975)`` with ``n_boot``.

    Attributes
    ----------
    by_group : pandas.DataFrame
        One row per group. First the audit columns of
        :data:`~fairprune_sk.metrics.FRAME_COLUMNS` (``count``, ``loss_dense``,
        ``loss_pruned``, ``excess_risk`` ``R(a) = loss_pruned − loss_dense`` (eq. 2),
        ``accuracy_dense``, ``accuracy_pruned``, ``accuracy_drop``, ``excess_accuracy_gap``
        ψ_g, ``flip_rate``); without a dense reference only ``count``, ``loss_dense`` and
        ``accuracy_dense`` (the net is its own θ*). Then the factors at θ*:
        ``gradient_norm`` ``‖g_a‖``, ``hessian_max_eig`` ``λ(H_a)``, ``boundary_closeness``
        (mean ``f(1 − f)``), ``input_grad_norm`` (mean ``‖∇_θ f(x)‖``, ``f`` the
        predicted-class probability: the gradient at each input, wrt the parameters). With a
        dense reference also: ``param_distance`` ``‖θ̂ − θ*‖``, ``bound_gradient_term``
        ``‖g_a‖‖θ̂ − θ*‖``, ``bound_hessian_term`` ``½ λ(H_a) ‖θ̂ − θ*‖²``, ``bound`` (their
        sum, Theorem 1 without the cubic rest) and ``taylor_estimate`` ``g_aᵀΔ + ½ ΔᵀH_aΔ``
        with ``Δ = θ̂ − θ*`` (the second-order Taylor expansion that Theorem 1 bounds, before
        Cauchy–Schwarz and the eigenvalue bound; usually much closer to the measurement than
        ``bound``).
    frame : ExcessRiskFrame or None
        The audit table of the pruned net against θ* (its ``fairness_violation`` is ξ, its
        ``max_excess_accuracy_gap`` max ψ_g); None without a dense reference.
    has_reference : bool
        Whether a dense reference was found (and so the bound columns exist).
    hessian_convergence : pandas.DataFrame
        Per group: ``n_iter`` (Hessian-vector products) and ``converged``.

    Examples
    --------
    >>> net.fit(X, y).prune(0.7)                                           # doctest: +SKIP
    >>> diag = GroupDiagnostics(net, X, y, sensitive_features=race)        # doctest: +SKIP
    >>> diag.by_group[["excess_risk", "bound", "gradient_norm"]]            # doctest: +SKIP
    >>> diag.frame.fairness_violation                                       # doctest: +SKIP
    >>> diag.correlations()                                                 # doctest: +SKIP
    >>> diag.plot().savefig("diagnostics.png")                              # doctest: +SKIP
    """

    def __init__(
        self,
        net: Any,
        X: Any,
        y: Any,
        *,
        sensitive_features: Any,
        reference: Any = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        batch_size: int = 1024,
        random_state: Any = None,
        eig_method: str = "lanczos",
        n_boot: int | None = None,
        ci_quantiles: Any = None,
    ) -> None:
        max_iter = _check_int(max_iter, "max_iter", 1)
        tol = _check_real(tol, "tol", 0.0)
        batch_size = _check_int(batch_size, "batch_size", 1)
        eig_method = _check_choice(eig_method, "eig_method", EIGEN_METHODS)
        check_bootstrap_params(n_boot, ci_quantiles)
        module = _module_of(net, "net")
        kept = _KeptState(module)  # net.predict_proba (skorch) leaves the module in eval mode
        try:
            self._compute(
                net, module, X, y, sensitive_features, reference, max_iter, tol, batch_size,
                random_state, eig_method, n_boot, ci_quantiles,
            )
        finally:
            kept.restore()

    def _compute(
        self, net, module, X, y, sensitive_features, reference, max_iter, tol, batch_size,
        random_state, eig_method, n_boot, ci_quantiles,
    ) -> None:
        X_arr = _as_input_array(X)
        y = np.asarray(y.detach().cpu() if torch.is_tensor(y) else y).ravel()
        if len(y) != len(X_arr):
            raise ValueError(f"y has {len(y)} samples but X has {len(X_arr)}")
        classes = getattr(net, "classes_", None) if not isinstance(net, nn.Module) else None
        y_index = (
            _as_class_indices(y, len(X_arr))
            if classes is None
            else encode_labels(y, np.asarray(classes))
        )
        groups = group_codes(sensitive_features, len(X_arr))

        dense_state = None
        if reference is not None:
            ref_classes = getattr(reference, "classes_", None)
            if not isinstance(reference, nn.Module | Mapping) and classes is not None and (
                ref_classes is not None
                and not np.array_equal(np.asarray(ref_classes), np.asarray(classes))
            ):
                raise ValueError(
                    f"reference.classes_ {np.asarray(ref_classes).tolist()} differ from "
                    f"net.classes_ {np.asarray(classes).tolist()}"
                )
            dense_state = _state_of(reference)
        elif getattr(net, "dense_state_dict_", None) is not None:
            dense_state = net.dense_state_dict_
        elif pruning.is_pruned(module):
            warnings.warn(
                "the net carries pruning masks but no dense reference (dense_state_dict_ is "
                "None and reference= was not given): gradients and Hessians are taken at the "
                "pruned parameters and no excess risk or bound is reported",
                UserWarning,
                stacklevel=3,
            )
        self.has_reference = dense_state is not None

        rng = check_random_state(random_state)
        seeds = rng.randint(0, 2**31 - 1, size=groups.n_groups)
        boot_seed = int(rng.randint(0, 2**31 - 1))
        with _Evaluator(module) as ev_net:
            logits_net = ev_net.predict_logits(X_arr, batch_size)
            if classes is not None and logits_net.shape[1] != len(classes):
                raise ValueError(
                    f"the module outputs {logits_net.shape[1]} classes but net.classes_ has "
                    f"{len(classes)}"
                )
            self._check_logits(net, X_arr, logits_net)
            ev_star = ev_net.at(dense_state) if dense_state is not None else ev_net
            with ev_star:
                logits_star = (
                    ev_star.predict_logits(X_arr, batch_size) if dense_state is not None
                    else logits_net
                )
                # θ̂ − θ* (None without a reference): the displacement pruning made
                delta = (
                    ev_net.flat_params().to(ev_star.dtype) - ev_star.flat_params()
                    if dense_state is not None else None
                )
                grad_norms, eigs, taylor, n_iter, converged = [], [], [], [], []
                for g in range(groups.n_groups):
                    idx = np.flatnonzero(groups.codes == g)
                    # one kept gradient graph per group serves g_a, ΔᵀH_aΔ and λ(H_a)
                    operator = _HessianOperator(ev_star, X_arr, y_index, idx, batch_size)
                    gradient = operator.gradient()
                    grad_norms.append(float(gradient.double().norm()))
                    if delta is not None:  # g_aᵀΔ + ½ ΔᵀH_aΔ: one more HVP per group
                        curvature = _dot(delta, operator(delta))
                        taylor.append(_dot(gradient, delta) + 0.5 * curvature)
                    del gradient
                    result = ev_star.top_eigenvalue(
                        X_arr, y_index, idx, method=eig_method, max_iter=max_iter, tol=tol,
                        seed=int(seeds[g]), batch_size=batch_size, operator=operator,
                    )
                    del operator
                    _warn_if_not_converged(  # points at the caller of GroupDiagnostics
                        result, max_iter, tol, f" of group {_label(groups.index[g])!r}", 4
                    )
                    eigs.append(result.value)
                    n_iter.append(result.n_iter)
                    converged.append(result.converged)
                out_grad = ev_star.output_grad_norms(X_arr, batch_size, "proba")
            distance = float(delta.double().norm()) if delta is not None else None

        # the audit columns: one ExcessRiskFrame from both nets' probabilities
        proba_net = torch.softmax(logits_net.double(), dim=1).numpy()
        proba_star = torch.softmax(logits_star.double(), dim=1).numpy()
        if classes is None:
            labels, frame_classes = y_index, np.arange(logits_net.shape[1])
        else:
            labels, frame_classes = y, np.asarray(classes)
        frame = ExcessRiskFrame.from_outputs(
            labels, proba_star, proba_net if dense_state is not None else proba_star,
            sensitive_features=sensitive_features, classes=frame_classes,
            n_boot=n_boot if dense_state is not None else None,
            ci_quantiles=ci_quantiles if dense_state is not None else None,
            random_state=boot_seed,
        )
        if dense_state is not None:
            audit = frame.by_group_with_ci()
            self.frame: ExcessRiskFrame | None = frame
        else:
            audit = frame.by_group[list(_OWN_REFERENCE_COLUMNS)]
            self.frame = None
        if not audit.index.equals(groups.index):  # both come from metrics.group_codes
            raise RuntimeError("the audit frame's groups differ from the diagnostics' groups")

        def mean(values: np.ndarray) -> np.ndarray:
            return group_mean(values, groups)

        columns: dict[str, Any] = {
            "gradient_norm": np.asarray(grad_norms),
            "hessian_max_eig": np.asarray(eigs),
            "boundary_closeness": mean(boundary_closeness(proba_star)),
            "input_grad_norm": mean(out_grad),
        }
        if dense_state is not None:
            gradient_term = columns["gradient_norm"] * distance
            hessian_term = 0.5 * columns["hessian_max_eig"] * distance**2
            columns.update(
                param_distance=np.full(groups.n_groups, distance),
                bound_gradient_term=gradient_term,
                bound_hessian_term=hessian_term,
                bound=gradient_term + hessian_term,
                taylor_estimate=np.asarray(taylor),
            )
        factors = pd.DataFrame(columns, index=groups.index)
        self._by_group = pd.concat([audit, factors], axis=1)
        self._convergence = pd.DataFrame(
            {"n_iter": n_iter, "converged": converged}, index=groups.index
        )

    @staticmethod
    def _check_logits(net: Any, X: np.ndarray, logits: torch.Tensor) -> None:
        """The module must output logits: compare softmax with ``net.predict_proba``."""
        predict_proba = getattr(net, "predict_proba", None)
        if isinstance(net, nn.Module) or predict_proba is None or len(X) == 0:
            return
        n = min(len(X), 64)
        expected = np.asarray(predict_proba(X[:n]), dtype=np.float64)
        got = torch.softmax(logits[:n].double(), dim=1).numpy()
        if expected.shape != got.shape or not np.allclose(expected, got, atol=1e-3):
            raise ValueError(
                "softmax of the module's output does not match net.predict_proba: "
                "GroupDiagnostics needs a module that outputs logits, trained with "
                "criterion=torch.nn.CrossEntropyLoss"
            )

    @property
    def by_group(self) -> pd.DataFrame:
        """Per-group table (a copy); see the class docstring for the columns."""
        return self._by_group.copy()

    @property
    def hessian_convergence(self) -> pd.DataFrame:
        """Hessian-vector products used and convergence flag of ``λ(H_a)``, per group."""
        return self._convergence.copy()

    def correlations(self, method: str = "spearman") -> pd.Series:
        """Correlation across groups of the measured excess risk ``R(a)`` with each factor.

        Theorem 1 and Proposition 1 predict positive correlations with ``gradient_norm``,
        ``hessian_max_eig``, ``boundary_closeness`` and ``bound``, and a negative one with
        ``count``; ``taylor_estimate`` shows whether the second-order model of the loss ranks
        the groups right at all.

        Parameters
        ----------
        method : {"spearman", "kendall", "pearson"}, default="spearman"
            Rank correlations suit the paper's qualitative claims.

        Returns
        -------
        pandas.Series
            Indexed by factor; NaN where a factor is constant across groups.

        Raises
        ------
        ValueError
            Without a dense reference (no excess risk), or for an unknown ``method``.
        """
        method = _check_choice(method, "method", ("spearman", "kendall", "pearson"))
        if not self.has_reference:
            raise ValueError(
                "no excess risk to correlate: the net was not pruned and no reference= "
                "was given"
            )
        frame = self._by_group
        factors = [c for c in CORRELATION_FACTORS if c in frame.columns]
        values = {}
        for factor in factors:
            pair = frame[["excess_risk", factor]].astype(np.float64)
            if pair[factor].nunique() < 2 or pair["excess_risk"].nunique() < 2:
                values[factor] = np.nan
            else:
                values[factor] = float(pair.corr(method=method).iloc[0, 1])
        return pd.Series(values, name=f"{method} correlation with excess_risk", dtype=np.float64)

    def plot(self, *, figsize: tuple[float, float] | None = None):
        """Bars per group of the factors, as in the paper's Figures 2 and 3.

        Panels: gradient norm ``‖g_a‖``, Hessian eigenvalue ``λ(H_a)``, boundary closeness,
        and (with a dense reference) the Theorem 1 bound and the second-order estimate next to
        the measured ``R(a)`` on a symmetric log scale, otherwise the output gradient norm.

        Parameters
        ----------
        figsize : (float, float), optional
            Figure size in inches; ``(10, 7)`` if None.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        frame = self._by_group
        labels = [_label(key) for key in frame.index]
        positions = np.arange(len(labels))
        fig, axes = plt.subplots(2, 2, figsize=figsize or (10, 7), constrained_layout=True)
        panels = [
            ("gradient_norm", "group gradient norm ‖g_a‖"),
            ("hessian_max_eig", "top Hessian eigenvalue λ(H_a)"),
            ("boundary_closeness", "boundary closeness mean f(1 − f)"),
        ]
        for ax, (column, title) in zip(axes.flat, panels, strict=False):
            ax.bar(positions, frame[column].to_numpy(), color="tab:blue")
            ax.set_title(title)
        last = axes.flat[3]
        if self.has_reference:
            width = 0.27
            bars = [("bound", "Theorem 1 bound", "tab:orange"),
                    ("taylor_estimate", "2nd-order estimate", "tab:purple"),
                    ("excess_risk", "measured R(a)", "tab:green")]
            for k, (column, label, color) in enumerate(bars):
                last.bar(positions + (k - 1) * width, frame[column].to_numpy(), width,
                         label=label, color=color)
            # the bound is often orders of magnitude above R(a): a symmetric log scale
            # keeps both (and negative values) readable
            measured = float(np.nanmax(np.abs(frame["excess_risk"].to_numpy()), initial=0.0))
            last.set_yscale("symlog", linthresh=max(measured / 10, 1e-12))
            last.axhline(0.0, color="black", linewidth=0.5)
            last.set_title("excess risk R(a), symlog scale")
            last.legend(fontsize="x-small", loc="best")
        else:
            last.bar(positions, frame["input_grad_norm"].to_numpy(), color="tab:blue")
            last.set_title("output gradient norm mean ‖∇_θ f(x)‖")
        name = ", ".join(str(n) for n in frame.index.names if n is not None)
        for ax in axes.flat:
            ax.set_xticks(positions)
            ax.set_xticklabels(labels, rotation=30, ha="right")
            ax.set_xlabel(name)
        return fig

    def __repr__(self) -> str:
        return (
            f"GroupDiagnostics(n_groups={len(self._by_group)}, "
            f"has_reference={self.has_reference})"
        )
