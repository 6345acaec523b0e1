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

``rate`` is always a *target total*: pruning is cumulative, pruned weights stay pruned, and
``prune_module(m, 0.5)`` followed by ``prune_module(m, 0.8)`` leaves 80 % of the weights pruned.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from .._validation import RANDOM_STATE, torch_generator, validate_params
from ._graph import example_batch, norms_after
from ._masks import effective, mask_of
from ._select import DENSITY, KEEP_DENSE, METHOD, MODULE, RATE, prunable_tensors

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
    keep_dense : iterable of str or str, default=()
        Layers to leave dense: qualified names and/or ``"first"`` / ``"last"``
        (see :func:`prunable_tensors`).
    min_layer_density : float in [0, 1], default=0.0
        Every selected layer keeps at least ``ceil(min_layer_density * n)`` of its ``n`` weights
        (units, for the structured methods). With ``global_magnitude`` these are the layer's
        largest weights, which prevents global pruning from emptying a layer; with the
        layer-wise methods it caps each layer's rate at ``1 - min_layer_density``.
    random_state : None, int, numpy.random.RandomState or Generator, default=None
        Seeds ``method="random"`` (same seed, same masks); ignored by the other methods. The
        draws use their own ``torch.Generator`` seeded by
        :func:`fairprune_sk._validation.torch_generator` (an int is the torch seed itself);
        torch's global RNG is left untouched.
    example_inputs : torch.Tensor, optional
        A batch that ``module`` accepts; used by the structured methods only, to trace the
        network and find the BatchNorm after each layer. By default 2 random rows shaped as
        ``module.input_shape`` or as the ``in_features`` of a first ``Linear`` layer.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Raises
    ------
    ValueError
        On an invalid ``rate``, ``method``, ``keep_dense``, ``min_layer_density`` or
        ``random_state``; if ``rate`` is below the current (mask) sparsity, since pruned weights
        cannot be restored; if ``min_layer_density`` makes ``rate`` unreachable; if ``rate > 0``
        and no layer is left to prune.

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
    rate, min_layer_density = float(rate), float(min_layer_density)
    structured = method in _STRUCTURED_NORM
    targets = prunable_tensors(module, keep_dense=keep_dense, structured=structured)
    if not targets:
        if rate == 0.0:
            return module
        raise ValueError(
            f"no prunable layer left in {type(module).__name__} for method={method!r} with "
            f"keep_dense={keep_dense!r}; prunable layers are "
            f"{[name for name, _, _ in prunable_tensors(module)]!r}"
        )

    if method == "global_magnitude":
        _prune_global(targets, rate, min_layer_density)
    elif method == "layer_magnitude":
        _prune_layerwise(targets, rate, min_layer_density, lambda weight: weight.abs())
    elif method == "random":
        generator = torch_generator(random_state)

        def random_scores(weight: torch.Tensor) -> torch.Tensor:
            return torch.rand(weight.shape, generator=generator).to(weight.device)

        _prune_layerwise(targets, rate, min_layer_density, random_scores)
    else:
        norms = norms_after(module, example_batch(module, example_inputs))
        _prune_structured(targets, rate, min_layer_density, _STRUCTURED_NORM[method], norms)

    emptied = [name for name, sub, pname in targets if not bool(mask_of(sub, pname).any())]
    if emptied:
        warnings.warn(
            f"Pruning emptied layer(s) {emptied!r}: all their weights are pruned, so their "
            "outputs no longer depend on their inputs. Keep them dense with "
            f"keep_dense={emptied!r}, or set min_layer_density > 0 (e.g. 0.01) so that every "
            "layer keeps some weights.",
            UserWarning,
            stacklevel=3,  # this function, validate_params' wrapper, the caller
        )
    return module


def _cumulative_error(rate: float, where: str, already: int, size: int) -> ValueError:
    return ValueError(
        f"rate={rate!r} is below the current sparsity {already / size:.4f} of {where} "
        f"({already} of {size} already pruned); pruning is cumulative and cannot restore "
        "pruned weights (use a rate >= the current sparsity, or start from an unpruned copy)"
    )


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
    target = round(rate * total)
    if target < already:
        raise _cumulative_error(rate, "the selected layers", already, total)
    if target > total - protected:
        raise ValueError(
            f"min_layer_density={min_layer_density!r} keeps at least {protected} of the "
            f"{total - already} unpruned weights, so rate={rate!r} ({target} of {total} "
            f"weights pruned) cannot be reached; the highest reachable rate is "
            f"{(total - protected) / total:.4f}"
        )
    prune.global_unstructured(
        [(sub, pname) for _, sub, pname in targets],
        pruning_method=prune.L1Unstructured,
        importance_scores=scores,
        amount=int(target - already),
    )


def _layer_plan(targets, rate, min_layer_density, count) -> list[tuple[nn.Module, str, int]]:
    """Per layer, how many more entries to prune; raises before anything is modified."""
    plan = []
    for layer, sub, pname in targets:
        size, already = count(sub, pname)
        target = round(rate * size)
        if target < already:
            raise _cumulative_error(rate, f"layer {layer!r}", already, size)
        if min_layer_density > 0:
            target = max(already, min(target, size - math.ceil(min_layer_density * size)))
        plan.append((sub, pname, target - already))
    return plan


def _count_weights(sub: nn.Module, pname: str) -> tuple[int, int]:
    mask = mask_of(sub, pname)
    return mask.numel(), int((mask == 0).sum())


def _count_units(sub: nn.Module, pname: str) -> tuple[int, int]:
    mask = mask_of(sub, pname).flatten(1)
    return mask.shape[0], int((~mask.bool().any(dim=1)).sum())


def _prune_layerwise(
    targets, rate: float, min_layer_density: float, score: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    for sub, pname, amount in _layer_plan(targets, rate, min_layer_density, _count_weights):
        with torch.no_grad():
            importance = score(effective(sub, pname).detach())
        prune.l1_unstructured(sub, pname, amount=int(amount), importance_scores=importance)


def _prune_structured(targets, rate: float, min_layer_density: float, norm: int, norms) -> None:
    plan = _layer_plan(targets, rate, min_layer_density, _count_units)
    for (layer, _, _), (sub, pname, amount) in zip(targets, plan, strict=True):
        with torch.no_grad():
            importance = effective(sub, pname).detach()
        prune.ln_structured(
            sub, pname, amount=int(amount), n=norm, dim=0, importance_scores=importance
        )
        alive = sub.weight_mask.flatten(1).bool().any(dim=1)
        if getattr(sub, "bias", None) is not None:
            _mask_units(sub, "bias", alive)
        for bn in norms.get(layer, []):
            if bn.num_features == alive.numel() and bn.affine:
                _mask_units(bn, "weight", alive)
                _mask_units(bn, "bias", alive)


def _mask_units(sub: nn.Module, name: str, alive: torch.Tensor) -> None:
    current = mask_of(sub, name)
    prune.custom_from_mask(sub, name, mask=alive.to(device=current.device, dtype=current.dtype))
