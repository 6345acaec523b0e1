"""The pruning methods: which weights :func:`prune_module` removes.

``global_magnitude``
    The smallest ``|w|`` across all prunable layers are removed (one ranking for the whole net).
``layer_magnitude``
    Every prunable layer loses the same fraction of its smallest ``|w|``.
``random``
    Every prunable layer loses the same fraction of randomly chosen weights.
``structured_l1`` / ``structured_l2``
    Every prunable layer except the last loses the same fraction of its output units (rows of a
    ``Linear``, filters of a ``Conv``) with the smallest L1 / L2 norm. A pruned unit is made a
    *dead* unit: its weight row, its bias and the matching channel of a ``BatchNorm`` that follows
    it are masked, so it outputs exactly zero and :func:`~fairprune_sk.pruning.compact` can remove
    it.
``fair_taylor`` / ``fair_taylor_structured`` (:data:`DATA_DRIVEN_METHODS`)
    The group-balanced Taylor criterion on data ``X, y, groups`` (:mod:`._fair`): the weights
    (output units) whose removal is estimated to raise no group's loss much are removed, in
    steps, one ranking across layers / the same fraction of units per layer.

``rate`` is always a *target total*: pruning is cumulative, pruned weights stay pruned, and
``prune_module(m, 0.5)`` followed by ``prune_module(m, 0.8)`` leaves 80 % of the weights pruned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from .._validation import RANDOM_STATE, torch_generator, validate_params
from ._fair import ORDER_DEFAULT, STEP_FRACTION_DEFAULT, prune_fair
from ._graph import example_batch, norms_after
from ._masks import check_not_quantized, effective, mask_of
from ._plan import (
    count_units,
    count_weights,
    global_target,
    kill_dead_units,
    layer_plan,
    select_targets,
    warn_emptied,
)
from ._saliency import BATCH_SIZE, DATA, group_data
from ._select import DATA_DRIVEN_METHODS, DENSITY, KEEP_DENSE, METHOD, MODULE, RATE

__all__ = ["prune_module"]

_STRUCTURED_NORM: dict[str, int] = {"structured_l1": 1, "structured_l2": 2}


@validate_params(
    {
        "module": MODULE,
        "rate": RATE,
        "method": METHOD,
        "keep_dense": KEEP_DENSE,
        "min_layer_density": DENSITY,
        "random_state": RANDOM_STATE,
        "example_inputs": [torch.Tensor, None],
        "X": DATA,
        "y": DATA,
        "groups": DATA,
        "batch_size": BATCH_SIZE,
    },
    prefer_skip_nested_validation=True,
)
def prune_module(
    module: nn.Module,
    rate: float,
    method: str = "global_magnitude",
    *,
    keep_dense: Iterable[str] | str = (),
    min_layer_density: float = 0.0,
    random_state=None,
    example_inputs: torch.Tensor | None = None,
    X: Any = None,
    y: Any = None,
    groups: Any = None,
    batch_size: int = 256,
) -> nn.Module:
    """Prune ``module`` in place so that a fraction ``rate`` of its prunable weights is zero.

    Masks are installed with ``torch.nn.utils.prune`` (every selected tensor is
    reparametrised, even at ``rate=0``), so training afterwards keeps pruned weights at zero.

    Parameters
    ----------
    module : torch.nn.Module
        The network; modified in place.
    rate : float in [0, 1)
        Target **total** fraction of pruned weights of the selected layers. Pruning is
        cumulative: on an already pruned module the masks only grow (every pruned weight stays
        pruned) until ``rate`` is reached. For the structured methods, ``rate`` is the fraction
        of output units (rows / filters) pruned in each selected layer; the weight sparsity
        reported by :func:`sparsity` is then lower, since the last layer is never pruned.
    method : str, default="global_magnitude"
        One of :data:`PRUNING_METHODS`:

        - ``"global_magnitude"``: one ranking of ``|w|`` across all selected layers; exactly
          ``round(rate * N)`` of the ``N`` selected weights end pruned.
        - ``"layer_magnitude"``: each layer keeps its largest ``|w|``, ``round(rate * n)`` of
          its ``n`` weights pruned.
        - ``"random"``: each layer loses ``round(rate * n)`` uniformly random weights.
        - ``"structured_l1"`` / ``"structured_l2"``: each layer but the last loses
          ``round(rate * units)`` whole output units with the smallest L1 / L2 norm. The bias of
          a pruned unit, and the matching channel (weight and bias) of a ``BatchNorm`` that
          follows the layer (through element-wise activations, dropout or pooling only), are
          masked too, so a pruned unit outputs exactly zero, in training as in evaluation, and
          :func:`compact` can remove it without changing the outputs. (The BatchNorm layers
          are found in Torch-Pruning's dependency graph, traced on ``example_inputs``; without
          them only the weights and the bias of a pruned unit are masked.)
        - ``"fair_taylor"`` (data-driven): one ranking across all selected layers of the
          worst group's estimated loss increase when a weight is removed,
          :math:`s_j = \\max_a (-g_{a,j} w_j)`, with :math:`g_a` the gradient of group ``a``'s
          mean cross-entropy on ``X, y`` (computed on the logits of ``module``); the lowest
          scores are pruned in steps of 2 % of the remaining weights, recomputed at every
          step; exactly ``round(rate * N)`` weights end pruned (see
          :func:`fair_taylor_prune` for the other orders and step sizes).
        - ``"fair_taylor_structured"`` (data-driven): each layer but the last loses
          ``round(rate * units)`` output units, scored by
          :class:`GroupBalancedTaylorImportance` (the worst group's estimated loss increase
          when the unit is removed), in the same steps; pruned units are dead as with
          ``"structured_l1"``.
    keep_dense : iterable of str or str, default=()
        Layers to leave dense: qualified names and/or ``"first"`` / ``"last"``
        (see :func:`prunable_tensors`).
    min_layer_density : float in [0, 1], default=0.0
        Every selected layer keeps at least ``ceil(min_layer_density * n)`` of its ``n`` weights
        (units, for the structured methods). With ``global_magnitude`` these are the layer's
        largest weights, which prevents global pruning from emptying a layer; with the
        layer-wise methods it caps each layer's rate at ``1 - min_layer_density``.
    random_state : None, int, numpy.random.RandomState or Generator, default=None
        Seeds ``method="random"`` (same seed, same masks); ignored by the other methods (the
        data-driven ones are deterministic up to float rounding). The
        draws use their own ``torch.Generator`` seeded by
        :func:`fairprune_sk._validation.torch_generator` (an int is the torch seed itself);
        torch's global RNG is left untouched.
    example_inputs : torch.Tensor, optional
        A batch that ``module`` accepts; used by the structured methods only, to trace the
        network and find the BatchNorm after each layer. By default 2 random rows shaped as
        ``module.input_shape`` or as the ``in_features`` of a first ``Linear`` layer.
    X : array-like or torch.Tensor of shape (n_samples, ...), optional
        Rows that ``module`` accepts; required by the :data:`DATA_DRIVEN_METHODS`, ignored
        by the others.
    y : array-like or torch.Tensor of shape (n_samples,), optional
        Integer class indices ``0 .. n_classes - 1`` of the rows (the logit columns);
        required by the :data:`DATA_DRIVEN_METHODS`.
    groups : array-like or torch.Tensor of shape (n_samples,), optional
        Integer group codes ``0 .. n_groups - 1`` of the rows
        (:func:`fairprune_sk.metrics.group_codes` makes them from sensitive features);
        required by the :data:`DATA_DRIVEN_METHODS`.
    batch_size : int, default=256
        Rows per forward pass of the data-driven methods.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Raises
    ------
    ValueError
        On an invalid ``rate``, ``method``, ``keep_dense``, ``min_layer_density`` or
        ``random_state``; for a data-driven method, naming whichever of ``X``, ``y`` and
        ``groups`` is missing or invalid; if ``rate`` is below the current (mask) sparsity,
        since pruned weights cannot be restored; if ``min_layer_density`` makes ``rate``
        unreachable; if ``rate > 0`` and no layer is left to prune; if ``module`` is quantized
        (:func:`fairprune_sk.quantization.quantize_module`): prune first, then quantize.

    Warns
    -----
    UserWarning
        If a layer ends with all its weights pruned (its output no longer depends on its input);
        the message names the layer and how to prevent it.

    Notes
    -----
    ``torch.nn.utils.prune`` applies ``amount`` to the *remaining* entries of an already pruned
    tensor; the target total is converted to the number of entries still to prune. Magnitudes
    are ranked on the current ``weight_orig * weight_mask``, not on the ``weight`` attribute,
    which is only refreshed by a forward pass. ``random`` draws uniform scores from a seeded
    ``torch.Generator`` and prunes the lowest with ``L1Unstructured`` (``importance_scores``),
    because ``prune.random_unstructured`` only uses torch's global RNG.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from fairprune_sk.pruning import prune_module, sparsity
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 5))
    >>> net = prune_module(net, 0.5)
    >>> round(sparsity(net), 3)
    0.5
    >>> round(sparsity(prune_module(net, 0.8)), 3)
    0.8
    """
    check_not_quantized(module, "prune_module", "prune")
    rate, min_layer_density = float(rate), float(min_layer_density)
    data = group_data(X, y, groups, method=method) if method in DATA_DRIVEN_METHODS else None
    structured = method in _STRUCTURED_NORM or method == "fair_taylor_structured"
    targets = select_targets(module, rate, method, keep_dense, structured)
    if not targets:
        return module

    if method == "global_magnitude":
        _prune_global(targets, rate, min_layer_density)
    elif method == "layer_magnitude":
        _prune_layerwise(targets, rate, min_layer_density, lambda weight: weight.abs())
    elif method == "random":
        generator = torch_generator(random_state)

        def random_scores(weight: torch.Tensor) -> torch.Tensor:
            return torch.rand(weight.shape, generator=generator).to(weight.device)

        _prune_layerwise(targets, rate, min_layer_density, random_scores)
    elif data is not None:
        prune_fair(
            module,
            targets,
            rate,
            min_layer_density,
            data,
            structured=structured,
            order=ORDER_DEFAULT,
            step_fraction=STEP_FRACTION_DEFAULT,
            batch_size=int(batch_size),
            example_inputs=example_inputs,
        )
    else:
        norms = norms_after(module, example_batch(module, example_inputs))
        _prune_structured(targets, rate, min_layer_density, _STRUCTURED_NORM[method], norms)

    warn_emptied(targets, stacklevel=3)  # this function, validate_params' wrapper, the caller
    return module


def _prune_global(targets, rate: float, min_layer_density: float) -> None:
    total = already = protected = 0
    scores: dict[tuple[nn.Module, str], torch.Tensor] = {}
    with torch.no_grad():
        for _, sub, pname in targets:
            weight = effective(sub, pname).detach()
            mask = mask_of(sub, pname)
            score = weight.abs().flatten().clone()
            if min_layer_density > 0:
                keep = math.ceil(min_layer_density * weight.numel())
                top = torch.topk(score, keep).indices
                score[top] = math.inf
                protected += int((mask.flatten()[top] != 0).sum())
            scores[(sub, pname)] = score.view_as(weight)
            total += weight.numel()
            already += int((mask == 0).sum())
    target = global_target(rate, min_layer_density, total, already, protected)
    prune.global_unstructured(
        [(sub, pname) for _, sub, pname in targets],
        pruning_method=prune.L1Unstructured,
        importance_scores=scores,
        amount=int(target - already),
    )


def _prune_layerwise(
    targets, rate: float, min_layer_density: float, score: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    for sub, pname, amount in layer_plan(targets, rate, min_layer_density, count_weights):
        with torch.no_grad():
            importance = score(effective(sub, pname).detach())
        prune.l1_unstructured(sub, pname, amount=int(amount), importance_scores=importance)


def _prune_structured(targets, rate: float, min_layer_density: float, norm: int, norms) -> None:
    plan = layer_plan(targets, rate, min_layer_density, count_units)
    for sub, pname, amount in plan:
        with torch.no_grad():
            importance = effective(sub, pname).detach()
        prune.ln_structured(
            sub, pname, amount=int(amount), n=norm, dim=0, importance_scores=importance
        )
    kill_dead_units(targets, norms)
