"""A group-balanced Taylor criterion for whole channels, as a Torch-Pruning ``Importance``.

Torch-Pruning ranks the channels of a dependency group (a layer's output channels together
with everything coupled to them: the input columns of the next layers, across flatten or
residual additions) with an ``Importance``: ``__call__(group)`` returns one score per channel.
:class:`GroupBalancedTaylorImportance` is such a criterion, so any Torch-Pruning pruner
(``tp.pruner.MetaPruner`` and its subclasses) can use it; :func:`prune_module` uses it for
``method="fair_taylor_structured"``.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner import function

from .._validation import Interval, check_args
from ._saliency import GroupStatistics, group_data, group_statistics, taylor_change

__all__ = ["GroupBalancedTaylorImportance"]

_SCORED = (nn.Linear, nn.modules.conv._ConvNd)
_OUT = (function.prune_conv_out_channels, function.prune_linear_out_channels)
_IN = (function.prune_conv_in_channels, function.prune_linear_in_channels)


class GroupBalancedTaylorImportance(tp.importance.GroupMagnitudeImportance):
    """Score a channel by the largest estimated loss increase of any group when it is removed.

    For a channel ``c`` of a Torch-Pruning dependency group, let :math:`S_c` be the weights
    removed with it in the ``Linear`` / ``Conv`` layers of the group (its output row or filter,
    and its input columns in the next layers). Each group ``a`` of the data gets the Taylor
    estimate of its mean cross-entropy change when those weights are set to 0,

    .. math::

        \\widehat{ΔL}_a(c) = \\mathop{\\mathrm{red}}_{\\text{layers}}
            \\sum_{j \\in S_c} \\left(-g_{a,j} w_j + \\tfrac12 F_{a,jj} w_j^2\\right),

    with :math:`g_a` the group's gradient, :math:`F_{a,jj}` its diagonal empirical Fisher
    (``order=2``; ``order=1`` keeps the first term only), and "red" Torch-Pruning's
    ``group_reduction`` over the layers of the group (the mean by default). The first-order
    term of a whole channel is the sum over its weights (the change along the step
    :math:`-w_{S_c}`); the second-order term keeps the Hessian's diagonal only. The channel's
    score is the worst group's estimate, clipped at 0:

    .. math::

        s(c) = \\max\\left(0, \\max_{a:\\, n_a > 0} \\widehat{ΔL}_a(c)\\right),

    so a channel that matters to *any* group keeps a high score, and a channel whose removal is
    estimated to lower every group's loss scores 0. The score is then normalised by
    Torch-Pruning's ``normalizer`` (divided by the mean by default), which only matters for
    global pruning, where channels of different groups are ranked together.

    The per-group gradients (and Fisher diagonals) of every ``Linear`` / ``Conv`` weight of the
    model are computed on ``X, y, groups`` (one pass over the rows, grouped, in eval mode; the
    model's ``.grad``, modes and flags are left as they were) when the importance is first
    called, and again whenever a parameter of the model has been replaced, reshaped or changed
    in place since (after a pruning step, or fine-tuning). BatchNorm and bias parameters are
    not scored.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, ...)
        Rows the model accepts.
    y : array-like or torch.Tensor of shape (n_samples,)
        Integer class indices (the model returns logits, one column per class).
    groups : array-like or torch.Tensor of shape (n_samples,)
        Integer group codes ``0 .. n_groups - 1``.
    order : {1, 2}, default=1
        Taylor order of the per-weight estimate.
    batch_size : int, default=256
        Rows per forward pass.
    group_reduction : str, default="mean"
        How the layers of a dependency group are combined, per data group (Torch-Pruning's
        ``"mean"``, ``"sum"``, ``"max"``, ``"prod"``, ``"first"``, ``"gate"``).
    normalizer : str or callable or None, default="mean"
        Torch-Pruning's normalisation of the returned scores.
    model : torch.nn.Module, optional
        The model to differentiate; by default the model of the dependency graph that built
        the group (``tp.DependencyGraph.model``).

    Examples
    --------
    >>> import torch
    >>> import torch_pruning as tp
    >>> from torch import nn
    >>> from fairprune_sk.pruning import GroupBalancedTaylorImportance
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> X, y, groups = torch.randn(60, 6), torch.randint(0, 3, (60,)), torch.arange(60) % 4
    >>> importance = GroupBalancedTaylorImportance(X, y, groups)
    >>> pruner = tp.pruner.MetaPruner(model, torch.randn(2, 6), importance=importance,
    ...                               pruning_ratio=0.5, ignored_layers=[model[2]])
    >>> pruner.step()
    >>> model[0].out_features
    8
    """

    def __init__(
        self,
        X: Any,
        y: Any,
        groups: Any,
        *,
        order: int = 1,
        batch_size: int = 256,
        group_reduction: str = "mean",
        normalizer: Any = "mean",
        model: nn.Module | None = None,
    ) -> None:
        check_args(
            {
                "order": [Interval(Integral, 1, 2, closed="both")],
                "batch_size": [Interval(Integral, 1, None, closed="left")],
                "model": [nn.Module, None],
            },
            {"order": order, "batch_size": batch_size, "model": model},
            type(self).__name__,
        )
        super().__init__(
            group_reduction=group_reduction,
            normalizer=normalizer,
            bias=False,
            target_types=list(_SCORED),
        )
        self.data = group_data(X, y, groups, method=type(self).__name__)
        self.order = int(order)
        self.batch_size = int(batch_size)
        self.model = model
        self._cache: tuple[tuple, GroupStatistics, dict[nn.Module, str]] | None = None

    # ------------------------------------------------------------------------- statistics
    @staticmethod
    def _state(model: nn.Module) -> tuple:
        """What identifies the parameters' current values: object, storage, shape, version."""
        return tuple((id(p), p.data_ptr(), tuple(p.shape), p._version) for p in model.parameters())

    def statistics(self, model: nn.Module) -> tuple[GroupStatistics, dict[nn.Module, str]]:
        """The per-group statistics of ``model``'s ``Linear`` / ``Conv`` weights, and the
        name of each such layer; recomputed when the parameters changed since the last call."""
        state = self._state(model)
        if self._cache is None or self._cache[0] != state:
            layers = [
                (name, sub) for name, sub in model.named_modules() if isinstance(sub, _SCORED)
            ]
            stats = group_statistics(
                model, layers, self.data, fisher=self.order == 2, batch_size=self.batch_size
            )
            self._cache = (state, stats, {sub: name for name, sub in layers})
        return self._cache[1], self._cache[2]

    def reset(self) -> None:
        """Forget the cached statistics (the next call recomputes them)."""
        self._cache = None

    # ------------------------------------------------------------------------- scores
    def group_scores(self, group) -> torch.Tensor | None:
        """Per data group estimate :math:`\\widehat{ΔL}_a(c)`, shape (n_groups, n_channels),
        before the max over groups; None for a group without ``Linear`` / ``Conv`` layers."""
        model = self.model if self.model is not None else group._DG.model
        stats, names = self.statistics(model)
        changes, indices = [], []
        for item in group:
            dep, idxs = item
            layer, handler = dep.target.module, dep.handler
            if not isinstance(layer, _SCORED) or layer not in names:
                continue
            if handler not in _OUT and handler not in _IN:
                continue
            name = names[layer]
            weight = layer.weight.detach()
            fisher = None if stats.fisher is None else stats.fisher[name]
            change = taylor_change(weight, stats.gradient[name], fisher)  # (G, out, in, ...)
            if getattr(layer, "transposed", False):
                change = change.transpose(1, 2)
            if handler in _OUT:
                local = change.flatten(2).sum(2)
            else:
                local = change.transpose(1, 2).flatten(2).sum(2)
                conv_groups = getattr(layer, "groups", 1)
                if conv_groups not in (1, getattr(layer, "in_channels", 1)):
                    local = local.repeat(1, conv_groups)
            changes.append(local[:, list(idxs)])
            indices.append(item.root_idxs)
        if not changes:
            return None
        return torch.stack(
            [
                self._reduce([change[a] for change in changes], indices)
                for a in range(self.data.n_groups)
            ]
        )

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor | None:
        """One score per channel of ``group`` (see the class docstring)."""
        per_group = self.group_scores(group)
        if per_group is None:
            return None
        present = (self.data.counts > 0).to(per_group.device)
        score = per_group[present].max(0).values.clamp(min=0)
        return self._normalize(score, self.normalizer)
