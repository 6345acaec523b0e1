"""Per-group Taylor estimates of the loss change when a weight is removed.

For a network with weights ``θ`` and a group ``a`` of samples (its rows of the data), the mean
cross-entropy of the group is :math:`L_a(θ) = \\frac{1}{n_a} \\sum_{i \\in a} \\ell_i(θ)`.
Removing one weight (setting :math:`w_j` to 0, a step :math:`-w_j e_j`) changes it by

.. math::

    ΔL_a(j) = L_a(θ - w_j e_j) - L_a(θ)
            \\approx -g_{a,j} w_j + \\tfrac12 H_{a,jj} w_j^2,

with :math:`g_a = ∇L_a(θ)` and :math:`H_a = ∇^2 L_a(θ)`. The second-order term uses the
diagonal of the group's **empirical Fisher** in place of :math:`H_a`:
:math:`F_{a,jj} = \\frac{1}{n_a} \\sum_{i \\in a} (∂\\ell_i / ∂w_j)^2`, the mean of the squared
*per-sample* gradients (not the square of the mean gradient), which is non-negative.

Both moments come from one pass over the data per group: the samples are ordered by group, so
every batch holds one group; ``torch.autograd.grad`` of the batch's summed loss gives the
group's gradient, and the gradients with respect to each layer's output give the per-sample
squared gradients without a loop over samples: for a ``Linear`` layer with 2-D input ``x`` and
output gradient ``δ``,
:math:`\\sum_i (δ_i x_i^\\top)^{\\circ 2} = (δ^{\\circ 2})^\\top x^{\\circ 2}`; for a ``Conv``
layer (or a layer called several times) the per-sample gradients are formed with
``torch.func.vmap``. Statistics are taken in eval mode (dropout off, BatchNorm on its running
statistics), with every submodule's mode restored after.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import Interval, validate_params
from ._masks import unpruned_copy
from ._select import KEEP_DENSE, MODULE, prunable_tensors

__all__ = ["group_taylor_saliency"]

#: sklearn constraints of the data arguments of the data-driven criteria.
DATA: list[Any] = ["array-like", torch.Tensor, None]
BATCH_SIZE: list[Any] = [Interval(Integral, 1, None, closed="left")]
ORDER: list[Any] = [Interval(Integral, 1, 2, closed="both")]

MISSING_DATA = (
    "method={method!r} ranks the weights with data and needs X, y and groups; missing: "
    "{missing}. Pass the rows, their integer class indices and their integer group codes "
    "(0 .. n_groups - 1)."
)


# ----------------------------------------------------------------------------- the data
@dataclass(frozen=True)
class GroupData:
    """Rows, class indices and group codes, checked, with the rows ordered by group.

    Attributes
    ----------
    X : torch.Tensor of shape (n_samples, ...)
    y : torch.Tensor of shape (n_samples,), int64
    groups : torch.Tensor of shape (n_samples,), int64
        Codes in ``0 .. n_groups - 1``.
    n_groups : int
        ``groups.max() + 1``; a code without rows is an empty group.
    """

    X: torch.Tensor
    y: torch.Tensor
    groups: torch.Tensor
    n_groups: int

    @property
    def counts(self) -> torch.Tensor:
        """Rows per group, shape (n_groups,)."""
        return torch.bincount(self.groups, minlength=self.n_groups)

    def batches(self, batch_size: int) -> Iterable[tuple[int, torch.Tensor]]:
        """``(group, row indices)`` for batches of at most ``batch_size`` rows of one group."""
        order = torch.argsort(self.groups, stable=True)
        start = 0
        for group, count in enumerate(self.counts.tolist()):
            rows = order[start : start + count]
            start += count
            for first in range(0, count, batch_size):
                yield group, rows[first : first + batch_size]


def _as_tensor(values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach()
    if hasattr(values, "to_numpy"):  # pandas
        values = values.to_numpy()
    return torch.as_tensor(np.array(values, copy=True))


def _integer_codes(values: Any, name: str, what: str) -> torch.Tensor:
    tensor = _as_tensor(values)
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer {what}; got dtype {tensor.dtype}")
    tensor = tensor.to(torch.int64)
    if tensor.dim() != 1:
        raise ValueError(
            f"{name} must be 1-D (one {what[:-1]} per row); got shape {tuple(tensor.shape)}"
        )
    if tensor.numel() and int(tensor.min()) < 0:
        raise ValueError(f"{name} must hold {what} >= 0; got {int(tensor.min())}")
    return tensor


def group_data(X: Any, y: Any, groups: Any, *, method: str) -> GroupData:
    """Check the data of a data-driven criterion and return it as tensors.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Rows the module accepts (cast to float).
    y : array-like or torch.Tensor of shape (n_samples,)
        Integer class indices ``0 .. n_classes - 1`` (the logit columns).
    groups : array-like or torch.Tensor of shape (n_samples,)
        Integer group codes ``0 .. n_groups - 1``.
    method : str
        The method that needs the data, named in the messages.

    Returns
    -------
    GroupData

    Raises
    ------
    ValueError
        Naming every missing argument; on codes that are not integers, negative codes,
        lengths that differ, or no rows.
    """
    missing = [name for name, value in (("X", X), ("y", y), ("groups", groups)) if value is None]
    if missing:
        raise ValueError(MISSING_DATA.format(method=method, missing=", ".join(missing)))
    X = _as_tensor(X)
    if not X.dtype.is_floating_point:
        X = X.to(torch.get_default_dtype())
    y = _integer_codes(y, "y", "class indices")
    groups = _integer_codes(groups, "groups", "group codes")
    lengths = {"X": len(X), "y": len(y), "groups": len(groups)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"X, y and groups must have one entry per row; got lengths {lengths}")
    if len(X) == 0:
        raise ValueError(f"method={method!r} needs at least one row of data; got 0")
    return GroupData(X=X, y=y, groups=groups, n_groups=int(groups.max()) + 1)


# ----------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class GroupStatistics:
    """Per-group gradient, diagonal empirical Fisher and loss of some weight tensors.

    Attributes
    ----------
    gradient : dict of str to torch.Tensor of shape (n_groups, *weight.shape)
        :math:`g_a = ∇_w L_a`, the gradient of the group's mean loss.
    fisher : dict of str to torch.Tensor of shape (n_groups, *weight.shape), or None
        :math:`F_{a} = \\frac{1}{n_a}\\sum_{i \\in a} (∇_w \\ell_i)^{\\circ 2}`; None when not
        asked for.
    loss : torch.Tensor of shape (n_groups,)
        :math:`L_a`, the group's mean cross-entropy (0 for an empty group).
    counts : torch.Tensor of shape (n_groups,)
        Rows per group.
    """

    gradient: dict[str, torch.Tensor]
    fisher: dict[str, torch.Tensor] | None
    loss: torch.Tensor
    counts: torch.Tensor


def _layer_function(layer: nn.Module):
    """``f(x, w)``: the layer's output for input ``x`` and weight ``w``, bias left out."""
    if isinstance(layer, nn.Linear):
        return lambda x, w: F.linear(x, w)
    return lambda x, w: layer._conv_forward(x, w, None)


def _squared_sample_grads(layer: nn.Module, calls: list[tuple[torch.Tensor, torch.Tensor]]):
    """:math:`\\sum_i (∂\\ell_i/∂w)^{\\circ 2}` from the layer's inputs and output gradients."""
    if isinstance(layer, nn.Linear) and len(calls) == 1 and calls[0][0].dim() == 2:
        x, delta = calls[0]
        return (delta * delta).T @ (x * x)
    function = _layer_function(layer)
    weight = layer.weight.detach()

    def contribution(w, x, delta):  # <δ_i, f(x_i, w)>: its gradient in w is sample i's
        return (function(x.unsqueeze(0), w) * delta.unsqueeze(0)).sum()

    per_sample = torch.func.vmap(torch.func.grad(contribution), in_dims=(None, 0, 0))
    total = sum(per_sample(weight, x, delta) for x, delta in calls)
    return (total * total).sum(0)


def group_statistics(
    module: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    data: GroupData,
    *,
    fisher: bool,
    batch_size: int,
) -> GroupStatistics:
    """Per-group gradient (and diagonal empirical Fisher) of the ``weight`` of ``layers``.

    ``module`` is called on batches of ``data`` (one group per batch) in eval mode; the mode of
    every submodule, the ``requires_grad`` flags and the ``.grad`` of every parameter are left
    as they were (gradients come from ``torch.autograd.grad``).

    Parameters
    ----------
    module : torch.nn.Module
        Returns logits of shape (batch, n_classes).
    layers : sequence of (str, torch.nn.Module)
        Named ``Linear`` / ``Conv`` submodules of ``module`` whose ``weight`` is differentiated.
    data : GroupData
    fisher : bool
        Also accumulate the per-sample squared gradients.
    batch_size : int
        Rows per forward pass.

    Returns
    -------
    GroupStatistics
    """
    param = next(module.parameters())
    device, dtype = param.device, param.dtype
    weights = [layer.weight for _, layer in layers]
    shape = {name: layer.weight.shape for name, layer in layers}
    G = data.n_groups
    gradient = {
        name: torch.zeros((G, *shape[name]), device=device, dtype=dtype) for name, _ in layers
    }
    squares = {name: torch.zeros_like(gradient[name]) for name, _ in layers} if fisher else None
    loss_sum = torch.zeros(G, device=device, dtype=dtype)
    calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name, _ in layers}

    def recorder(name):
        def record(_, inputs, output):
            calls[name].append((inputs[0].detach(), output))

        return record

    modes = [sub.training for sub in module.modules()]
    flags = [w.requires_grad for w in weights]
    hooks = (
        [layer.register_forward_hook(recorder(name)) for name, layer in layers] if fisher else []
    )
    module.eval()
    try:
        for w in weights:
            w.requires_grad_(True)
        for group, rows in data.batches(batch_size):
            for recorded in calls.values():
                recorded.clear()
            with torch.enable_grad():
                logits = module(data.X[rows].to(device=device, dtype=dtype))
            targets = data.y[rows].to(device)
            _check_logits(logits, targets)
            with torch.enable_grad():
                loss = F.cross_entropy(logits, targets, reduction="sum")
            outputs = [out for name, _ in layers for _, out in calls[name]]
            grads = torch.autograd.grad(loss, weights + outputs, allow_unused=True)
            loss_sum[group] += loss.detach()
            for (name, _), grad in zip(layers, grads[: len(weights)], strict=True):
                if grad is not None:
                    gradient[name][group] += grad
            if fisher:
                deltas = iter(grads[len(weights) :])
                for name, layer in layers:
                    pairs = []
                    for x, out in calls[name]:
                        delta = next(deltas)
                        pairs.append((x, torch.zeros_like(out) if delta is None else delta))
                    if pairs:
                        squares[name][group] += _squared_sample_grads(layer, pairs)
    finally:
        for hook in hooks:
            hook.remove()
        for w, flag in zip(weights, flags, strict=True):
            w.requires_grad_(flag)
        for sub, mode in zip(module.modules(), modes, strict=True):
            sub.training = mode
    counts = data.counts.to(device)
    scale = 1.0 / counts.clamp(min=1).to(dtype)
    view = lambda t: scale.view(-1, *([1] * (t.dim() - 1)))  # noqa: E731
    return GroupStatistics(
        gradient={name: g * view(g) for name, g in gradient.items()},
        fisher=None if squares is None else {name: f * view(f) for name, f in squares.items()},
        loss=loss_sum * scale,
        counts=counts,
    )


def _check_logits(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(
            "the data-driven criteria need a module that returns logits of shape "
            f"(batch, n_classes); got an output of shape {tuple(logits.shape)}"
        )
    if targets.numel() and int(targets.max()) >= logits.shape[1]:
        raise ValueError(
            f"y holds class index {int(targets.max())} but the module returns "
            f"{logits.shape[1]} logits; y must hold class indices 0 .. {logits.shape[1] - 1}"
        )


def taylor_change(
    weight: torch.Tensor, gradient: torch.Tensor, fisher: torch.Tensor | None
) -> torch.Tensor:
    """:math:`-g_a w + \\tfrac12 F_a w^2` per group (first order alone when ``fisher`` is None).

    ``weight`` has the weight's shape; ``gradient`` and ``fisher`` a leading group axis.
    """
    change = -gradient * weight
    if fisher is not None:
        change = change + 0.5 * fisher * weight * weight
    return change


# ----------------------------------------------------------------------------- public
@validate_params(
    {
        "module": MODULE,
        "X": DATA,
        "y": DATA,
        "groups": DATA,
        "order": ORDER,
        "keep_dense": KEEP_DENSE,
        "batch_size": BATCH_SIZE,
    },
    prefer_skip_nested_validation=True,
)
def group_taylor_saliency(
    module: nn.Module,
    X: Any,
    y: Any,
    groups: Any,
    *,
    order: int = 1,
    keep_dense: Iterable[str] | str = (),
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Each group's estimated loss change when each prunable weight is removed alone.

    .. math::

        \\widehat{ΔL}_a(j) = -g_{a,j} w_j + [\\texttt{order}=2]\\, \\tfrac12 F_{a,jj} w_j^2,

    with :math:`g_a` the gradient of group ``a``'s mean cross-entropy on the logits of
    ``module`` and :math:`F_{a,jj}` its diagonal empirical Fisher (the mean of the per-sample
    squared gradients), standing for the Hessian diagonal :math:`H_{a,jj}`, in the second
    term (``order=2`` only). It is computed at the *effective* weights of a pruned module
    (a pruned weight is 0, so its estimate is 0).

    Parameters
    ----------
    module : torch.nn.Module
        Returns logits of shape (n_samples, n_classes); not modified (it is evaluated on an
        unpruned copy in eval mode).
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Rows that ``module`` accepts.
    y : array-like or torch.Tensor of shape (n_samples,)
        Integer class indices ``0 .. n_classes - 1``.
    groups : array-like or torch.Tensor of shape (n_samples,)
        Integer group codes ``0 .. n_groups - 1``
        (:func:`fairprune_sk.metrics.group_codes` makes them from sensitive features).
    order : {1, 2}, default=1
        Taylor order: 1 for :math:`-g_{a,j} w_j`, 2 adds :math:`\\tfrac12 F_{a,jj} w_j^2`
        (one more matrix product per layer and batch; per-sample gradients for a ``Conv``).
    keep_dense : iterable of str or str, default=()
        Layers left out, as in :func:`prunable_tensors`.
    batch_size : int, default=256
        Rows per forward pass; every batch holds the rows of one group.

    Returns
    -------
    dict of str to torch.Tensor of shape (n_groups, *weight.shape)
        Keyed by qualified layer name; row ``a`` is group ``a``'s estimate (0 for an empty
        group).

    Raises
    ------
    ValueError
        Naming a missing or invalid ``X``, ``y`` or ``groups``; if the module's output is not
        2-D logits or ``y`` holds an index beyond them.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from fairprune_sk.pruning import group_taylor_saliency
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> X, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    >>> groups = torch.arange(30) % 2
    >>> saliency = group_taylor_saliency(net, X, y, groups)
    >>> {name: tuple(s.shape) for name, s in saliency.items()}
    {'0': (2, 8, 4), '2': (2, 3, 8)}
    """
    data = group_data(X, y, groups, method="group_taylor_saliency")
    plain = unpruned_copy(module)
    chosen = {name for name, _, _ in prunable_tensors(module, keep_dense=keep_dense)}
    layers = [(name, sub) for name, sub, _ in prunable_tensors(plain) if name in chosen]
    stats = group_statistics(plain, layers, data, fisher=order == 2, batch_size=batch_size)
    return {
        name: taylor_change(
            layer.weight.detach(),
            stats.gradient[name],
            None if stats.fisher is None else stats.fisher[name],
        )
        for name, layer in layers
    }
