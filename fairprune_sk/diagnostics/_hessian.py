"""The cached Hessian operator: ``v ↦ H v`` keeping the first-order graph between products."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import _check_class_range
from ._functional import _batches

if TYPE_CHECKING:
    from ._evaluator import _Evaluator

# Bytes of first-order autograd graph an eigen-solver keeps between Hessian-vector products
# (saved activations of the cached batches); batches past it are recomputed at each product.
_HVP_CACHE_BYTES = 2**28


class _HessianOperator:
    """``v ↦ H v`` over the samples ``idx``, keeping the first-order graph between products.

    A Hessian-vector product is ``H v = ∇_θ (∇_θ J · v)``: a forward pass, a backward pass that
    records its own graph (``create_graph=True``), and a second backward through that graph.
    Only the last part depends on ``v``. The first product builds the graph of the summed
    gradient ``Σ_b ∇_θ J_b`` over as many batches as fit in ``cache_bytes`` and keeps it, so
    every later product of an eigen-solver is one backward call through the kept graph
    (``autograd.grad(g, θ, grad_outputs=v)``; ``H`` is symmetric). Batches past the budget are
    recomputed by double backward at each product (a forward and two backward passes each);
    ``benchmarks/bench_hessian.py`` prints both costs in gradient passes.

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
            _check_class_range(int(self.y[self.idx].max()), logits.shape[1])
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
