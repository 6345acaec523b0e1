"""Pruning of ``torch.nn.Module`` objects: pure functions built on ``torch.nn.utils.prune``.

This module knows nothing about estimators. It prunes the weights of ``nn.Linear`` and
``nn.Conv1d/2d/3d`` layers with torch's reparametrisation (``weight_orig`` + ``weight_mask`` and a
forward pre-hook), so that fine-tuning keeps pruned weights at zero, and offers the helpers that a
pruned module needs: sparsity, copies that survive a forward pass, plain state dicts, making the
masks permanent, and physically compacting a structurally pruned network.

Pruning methods (:data:`PRUNING_METHODS`)
-----------------------------------------
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
    it are masked, so it outputs exactly zero and :func:`compact` can remove it.

``rate`` is always a *target total*: pruning is cumulative, pruned weights stay pruned, and
``prune_module(m, 0.5)`` followed by ``prune_module(m, 0.8)`` leaves 80 % of the weights pruned.
"""

from __future__ import annotations

import copy
import math
import numbers
import operator
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune

__all__ = [
    "PRUNING_METHODS",
    "compact",
    "copy_module",
    "detach_pruned_weights",
    "effective_state_dict",
    "is_pruned",
    "layer_sparsity",
    "make_permanent",
    "prunable_tensors",
    "prune_module",
    "sparsity",
    "unpruned_copy",
    "validate_method",
    "validate_rate",
]

PRUNING_METHODS: tuple[str, ...] = (
    "global_magnitude",
    "layer_magnitude",
    "random",
    "structured_l1",
    "structured_l2",
)

_STRUCTURED_NORM: dict[str, int] = {"structured_l1": 1, "structured_l2": 2}
_PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_KEEP_DENSE_ALIASES = ("first", "last")


# ----------------------------------------------------------------------------- validation
def validate_rate(rate, name: str = "rate") -> float:
    """Check a pruning rate and return it as a float.

    Parameters
    ----------
    rate : float
        Fraction of weights to prune, in ``[0, 1)``. Booleans are rejected.
    name : str, default="rate"
        Name of the argument, used in the error message.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``rate`` is not a real number in ``[0, 1)``.

    Examples
    --------
    >>> validate_rate(0.5)
    0.5
    """
    if (
        isinstance(rate, bool)
        or not isinstance(rate, numbers.Real)
        or not 0.0 <= float(rate) < 1.0  # also rejects NaN
    ):
        raise ValueError(f"{name} must be a float in [0, 1); got {rate!r}")
    return float(rate)


def validate_method(method) -> str:
    """Check a pruning method name and return it.

    Parameters
    ----------
    method : str
        One of :data:`PRUNING_METHODS`.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If ``method`` is not one of :data:`PRUNING_METHODS`.

    Examples
    --------
    >>> validate_method("random")
    'random'
    """
    if not isinstance(method, str) or method not in PRUNING_METHODS:
        raise ValueError(f"method must be one of {PRUNING_METHODS}; got {method!r}")
    return method


def _validate_density(value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"min_layer_density must be a float in [0, 1]; got {value!r}")
    return float(value)


def _check_module(module) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")


def _torch_generator(random_state) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``random_state`` (as sklearn's check_random_state).

    An int ``s`` and ``np.random.RandomState(s)`` give the same generator; ``None`` draws a seed
    from numpy's global random state.
    """
    if random_state is None:
        seed = np.random.randint(0, 2**31 - 1)
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = np.random.RandomState(int(random_state)).randint(0, 2**31 - 1)
    elif isinstance(random_state, np.random.RandomState):
        seed = random_state.randint(0, 2**31 - 1)
    elif isinstance(random_state, np.random.Generator):
        seed = random_state.integers(0, 2**31 - 1)
    else:
        raise ValueError(
            f"random_state must be None, an int or a numpy.random.RandomState; got {random_state!r}"
        )
    return torch.Generator().manual_seed(int(seed))


# ----------------------------------------------------------------------------- selection
def prunable_tensors(
    module: nn.Module, *, keep_dense: Iterable[str] | str = (), structured: bool = False
) -> list[tuple[str, nn.Module, str]]:
    """List the weight tensors that pruning acts on.

    These are the ``weight`` of every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` submodule, in module
    order. Biases, normalisation layers and embeddings are never pruned.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    keep_dense : iterable of str or str, default=()
        Qualified submodule names (as in ``module.named_modules()``, e.g. ``"layers.0"``) to leave
        dense, and/or the special strings ``"first"`` and ``"last"`` for the first / last
        prunable layer. A real layer name takes precedence over the special strings.
    structured : bool, default=False
        Select for structured pruning: the **last** prunable layer is then always excluded,
        since its output units are the classes (removing one would remove a class).

    Returns
    -------
    list of (str, torch.nn.Module, str)
        ``(qualified name, submodule, "weight")`` for each selected layer.

    Raises
    ------
    ValueError
        If ``keep_dense`` names a layer that is not a prunable layer of ``module``.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [name for name, _, _ in prunable_tensors(net)]
    ['0', '2']
    >>> [name for name, _, _ in prunable_tensors(net, keep_dense=["first"])]
    ['2']
    """
    _check_module(module)
    layers = [
        (name, sub) for name, sub in module.named_modules() if isinstance(sub, _PRUNABLE_TYPES)
    ]
    names = [name for name, _ in layers]
    excluded = _resolve_keep_dense(keep_dense, names)
    if structured and names:
        excluded.add(names[-1])
    return [(name, sub, "weight") for name, sub in layers if name not in excluded]


def _resolve_keep_dense(keep_dense, names: list[str]) -> set[str]:
    if isinstance(keep_dense, str):
        keep_dense = (keep_dense,)
    try:
        requested = list(keep_dense)
    except TypeError:
        raise ValueError(
            f"keep_dense must be an iterable of layer names; got {keep_dense!r}"
        ) from None
    resolved: set[str] = set()
    unknown = []
    for item in requested:
        if isinstance(item, str) and item in names:
            resolved.add(item)
        elif item == "first" and names:
            resolved.add(names[0])
        elif item == "last" and names:
            resolved.add(names[-1])
        elif item not in _KEEP_DENSE_ALIASES:
            unknown.append(item)
    if unknown:
        raise ValueError(
            f"keep_dense contains unknown layer name(s) {unknown!r}; valid names are "
            f"{list(_KEEP_DENSE_ALIASES) + names!r}"
        )
    return resolved


# ----------------------------------------------------------------------------- inspection
def _pruning_hooks(sub: nn.Module) -> list[prune.BasePruningMethod]:
    return [h for h in sub._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]


def _effective(sub: nn.Module, name: str) -> torch.Tensor:
    """The current masked value of ``sub.<name>`` (recomputed, never the stale attribute)."""
    mask = getattr(sub, name + "_mask", None)
    orig = getattr(sub, name + "_orig", None)
    if mask is None or orig is None:
        return getattr(sub, name)
    return mask.to(dtype=orig.dtype) * orig


def _mask(sub: nn.Module, name: str) -> torch.Tensor:
    mask = getattr(sub, name + "_mask", None)
    return torch.ones_like(getattr(sub, name)) if mask is None else mask


def sparsity(module: nn.Module) -> float:
    """Fraction of zero entries over all prunable weights.

    Counts the zeros of the *effective* (masked) weights of every layer returned by
    :func:`prunable_tensors` (``keep_dense`` layers included).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    float
        In ``[0, 1]``; ``0.0`` for a module without prunable layers.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    >>> round(sparsity(prune_module(net, 0.5)), 2)
    0.5
    """
    zeros = total = 0
    with torch.no_grad():
        for _, sub, name in prunable_tensors(module):
            weight = _effective(sub, name)
            zeros += int((weight == 0).sum())
            total += weight.numel()
    return zeros / total if total else 0.0


def layer_sparsity(module: nn.Module) -> dict[str, float]:
    """Fraction of zero entries of each prunable layer's effective weight.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    dict of str to float
        Keyed by qualified layer name, in module order.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    >>> layer_sparsity(prune_module(net, 0.5, "layer_magnitude"))
    {'0': 0.5, '2': 0.5}
    """
    out: dict[str, float] = {}
    with torch.no_grad():
        for layer, sub, name in prunable_tensors(module):
            weight = _effective(sub, name)
            out[layer] = float((weight == 0).sum()) / weight.numel()
    return out


def is_pruned(module: nn.Module) -> bool:
    """Whether any submodule carries a torch pruning reparametrisation (``*_orig``/``*_mask``).

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 2))
    >>> is_pruned(net), is_pruned(prune_module(net, 0.5))
    (False, True)
    """
    _check_module(module)
    return prune.is_pruned(module)


# ----------------------------------------------------------------------------- pruning
def prune_module(
    module: nn.Module,
    rate: float,
    method: str = "global_magnitude",
    *,
    keep_dense: Iterable[str] | str = (),
    min_layer_density: float = 0.0,
    random_state=None,
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
          :func:`compact` can remove it without changing the outputs. (BatchNorm layers are
          found on the chains that :func:`compact` supports; in other architectures, e.g.
          residual ones, only the weights and the bias of a pruned unit are masked.)
    keep_dense : iterable of str or str, default=()
        Layers to leave dense: qualified names and/or ``"first"`` / ``"last"``
        (see :func:`prunable_tensors`).
    min_layer_density : float in [0, 1], default=0.0
        Every selected layer keeps at least ``ceil(min_layer_density * n)`` of its ``n`` weights
        (units, for the structured methods). With ``global_magnitude`` these are the layer's
        largest weights, which prevents global pruning from emptying a layer; with the
        layer-wise methods it caps each layer's rate at ``1 - min_layer_density``.
    random_state : None, int or numpy.random.RandomState, default=None
        Seeds ``method="random"`` (same seed, same masks); ignored by the other methods. The
        draws use their own ``torch.Generator``; torch's global RNG is left untouched.

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
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 5))
    >>> net = prune_module(net, 0.5)
    >>> round(sparsity(net), 3)
    0.5
    >>> round(sparsity(prune_module(net, 0.8)), 3)
    0.8
    """
    _check_module(module)
    rate = validate_rate(rate)
    method = validate_method(method)
    min_layer_density = _validate_density(min_layer_density)
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
        generator = _torch_generator(random_state)

        def random_scores(weight: torch.Tensor) -> torch.Tensor:
            return torch.rand(weight.shape, generator=generator).to(weight.device)

        _prune_layerwise(targets, rate, min_layer_density, random_scores)
    else:
        _prune_structured(module, targets, rate, min_layer_density, _STRUCTURED_NORM[method])

    emptied = [name for name, sub, pname in targets if not bool(_mask(sub, pname).any())]
    if emptied:
        warnings.warn(
            f"Pruning emptied layer(s) {emptied!r}: all their weights are pruned, so their "
            "outputs no longer depend on their inputs. Keep them dense with "
            f"keep_dense={emptied!r}, or set min_layer_density > 0 (e.g. 0.01) so that every "
            "layer keeps some weights.",
            UserWarning,
            stacklevel=2,
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
            weight = _effective(sub, pname).detach()
            mask = _mask(sub, pname)
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
    mask = _mask(sub, pname)
    return mask.numel(), int((mask == 0).sum())


def _count_units(sub: nn.Module, pname: str) -> tuple[int, int]:
    mask = _mask(sub, pname).flatten(1)
    return mask.shape[0], int((~mask.bool().any(dim=1)).sum())


def _prune_layerwise(
    targets, rate: float, min_layer_density: float, score: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    for sub, pname, amount in _layer_plan(targets, rate, min_layer_density, _count_weights):
        with torch.no_grad():
            importance = score(_effective(sub, pname).detach())
        prune.l1_unstructured(sub, pname, amount=int(amount), importance_scores=importance)


def _prune_structured(
    module: nn.Module, targets, rate: float, min_layer_density: float, norm: int
) -> None:
    plan = _layer_plan(targets, rate, min_layer_density, _count_units)
    norms = _norms_after(module)
    for (layer, _, _), (sub, pname, amount) in zip(targets, plan, strict=True):
        with torch.no_grad():
            importance = _effective(sub, pname).detach()
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
    current = _mask(sub, name)
    prune.custom_from_mask(sub, name, mask=alive.to(device=current.device, dtype=current.dtype))


# ----------------------------------------------------------------------------- copies
def make_permanent(module: nn.Module) -> nn.Module:
    """Remove every pruning reparametrisation, keeping the masked values, in place.

    After this, pruned entries are plain zeros in ordinary parameters (``weight_orig`` and
    ``weight_mask`` are gone) and training may change them again.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 4)), 0.5)
    >>> is_pruned(make_permanent(net)), round(sparsity(net), 2)
    (False, 0.5)
    """
    _check_module(module)
    for sub in module.modules():
        for hook in _pruning_hooks(sub):
            prune.remove(sub, hook._tensor_name)
    return module


def detach_pruned_weights(module: nn.Module) -> nn.Module:
    """Replace each pruned tensor attribute by a detached ``orig * mask``, in place.

    After pruning (and after every forward pass) the pruned ``weight`` attribute is a non-leaf
    tensor of the autograd graph, which ``copy.deepcopy`` refuses ("Only Tensors created
    explicitly by the user support the deepcopy protocol"). The forward pre-hook recomputes
    the attribute from ``weight_orig`` and ``weight_mask`` at the next forward pass, so
    replacing it by a detached value changes nothing else.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> import copy
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 2)), 0.5)
    >>> _ = copy.deepcopy(detach_pruned_weights(net))
    """
    _check_module(module)
    with torch.no_grad():
        for sub in module.modules():
            for hook in _pruning_hooks(sub):
                setattr(sub, hook._tensor_name, hook.apply_mask(sub))
    return module


def copy_module(module: nn.Module) -> nn.Module:
    """Deep copy that also works on pruned modules, keeping their masks.

    ``module`` is not modified: the non-leaf pruned attributes are copied as detached values
    (they are recomputed by the forward pre-hook anyway).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        An independent copy, pruned like ``module``.

    Examples
    --------
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 2)), 0.5)
    >>> is_pruned(copy_module(net))
    True
    """
    _check_module(module)
    memo: dict[int, object] = {}
    with torch.no_grad():
        for sub in module.modules():
            for hook in _pruning_hooks(sub):
                value = sub.__dict__.get(hook._tensor_name)
                if isinstance(value, torch.Tensor):
                    memo[id(value)] = hook.apply_mask(sub).detach().clone()
    return copy.deepcopy(module, memo)


def effective_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with plain names and the effective (masked) values.

    ``"0.weight_orig"`` and ``"0.weight_mask"`` become ``"0.weight"`` holding
    ``weight_orig * weight_mask``. Every value is cloned, detached and on CPU, so the result
    is a snapshot that loads into an unpruned instance of the same architecture.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    dict of str to torch.Tensor

    Examples
    --------
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 2)), 0.5)
    >>> sorted(effective_state_dict(net))
    ['0.bias', '0.weight']
    >>> _ = nn.Sequential(nn.Linear(4, 2)).load_state_dict(effective_state_dict(net))
    """
    _check_module(module)
    renamed: dict[str, tuple[str, nn.Module, str]] = {}
    dropped: set[str] = set()
    for qualname, sub in module.named_modules():
        prefix = f"{qualname}." if qualname else ""
        for hook in _pruning_hooks(sub):
            name = hook._tensor_name
            renamed[f"{prefix}{name}_orig"] = (f"{prefix}{name}", sub, name)
            dropped.add(f"{prefix}{name}_mask")
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if key in dropped:
                continue
            if key in renamed:
                key, sub, name = renamed[key]
                value = _effective(sub, name)
            out[key] = value.detach().to("cpu", copy=True)
    return out


def unpruned_copy(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """A plain copy of ``module`` without pruning hooks or masks.

    Parameters
    ----------
    module : torch.nn.Module
        Pruned or not; not modified.
    state_dict : mapping of str to torch.Tensor, optional
        Loaded (strictly) into the copy, e.g. the dense reference weights kept before
        pruning. Without it the copy holds the effective (masked) weights.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> net = prune_module(nn.Sequential(nn.Linear(4, 2)), 0.5)
    >>> plain = unpruned_copy(net)
    >>> is_pruned(plain), is_pruned(net)
    (False, True)
    """
    plain = make_permanent(copy_module(module))
    if state_dict is not None:
        plain.load_state_dict(state_dict)
    return plain


# ----------------------------------------------------------------------------- chains
# ``compact`` (and the search for BatchNorm channels after a structurally pruned layer) reads
# the network as a chain of operations between its first and last Linear/Conv layer.

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_POINTWISE_TYPES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid,
)  # fmt: skip
_IDENTITY_TYPES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)  # fmt: skip
_MAX_POOL_TYPES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)  # fmt: skip
_AVG_POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_POINTWISE_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, F.hardtanh, F.hardswish, F.hardsigmoid,
    F.softplus, F.softsign, F.logsigmoid,
}  # fmt: skip
_IDENTITY_FUNCTIONS = {
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
}  # fmt: skip
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    F.adaptive_max_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}  # fmt: skip
_POINTWISE_METHODS = {"relu", "sigmoid", "tanh"}
_IDENTITY_METHODS = {"contiguous", "float", "clone"}

_CHAIN_HELP = (
    "compact supports chains Linear/Conv -> [BatchNorm, element-wise activation, dropout, "
    "pooling, flatten]* -> Linear/Conv"
)


@dataclass
class _Op:
    """One step of a chain.

    kind is "layer", "norm", "pointwise" (constant map ``fn``), "identity", "pool" (keeps a
    constant channel constant unless ``zero_only``) or "flatten".
    """

    kind: str
    label: str
    module: nn.Module | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    zero_only: bool = False


def _module_op(label: str, sub: nn.Module) -> _Op:
    if isinstance(sub, _PRUNABLE_TYPES):
        if getattr(sub, "groups", 1) != 1:
            raise NotImplementedError(
                f"cannot compact layer {label!r}: grouped/depthwise convolutions "
                f"(groups={sub.groups}) are not supported"
            )
        return _Op("layer", label, sub)
    if isinstance(sub, _NORM_TYPES):
        return _Op("norm", label, sub)
    if isinstance(sub, _POINTWISE_TYPES) or (isinstance(sub, nn.PReLU) and sub.num_parameters == 1):
        return _Op("pointwise", label, sub, fn=sub)
    if isinstance(sub, _IDENTITY_TYPES):
        return _Op("identity", label, sub)
    if isinstance(sub, _MAX_POOL_TYPES):
        return _Op("pool", label, sub)
    if isinstance(sub, _AVG_POOL_TYPES):
        padded = any(p != 0 for p in np.atleast_1d(sub.padding)) and sub.count_include_pad
        zero_only = padded or sub.ceil_mode or getattr(sub, "divisor_override", None) is not None
        return _Op("pool", label, sub, zero_only=bool(zero_only))
    if isinstance(sub, nn.Flatten):
        if sub.start_dim != 1 or sub.end_dim != -1:
            raise NotImplementedError(
                f"cannot compact through {label!r}: only Flatten(start_dim=1, end_dim=-1) is "
                f"supported, got start_dim={sub.start_dim}, end_dim={sub.end_dim}"
            )
        return _Op("flatten", label, sub)
    raise NotImplementedError(
        f"cannot compact through {label!r} ({type(sub).__name__}) between two pruned layers; "
        f"{_CHAIN_HELP}"
    )


def _is_shape_query(node: torch.fx.Node) -> bool:
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",):
        return True
    return (
        node.op == "call_function"
        and node.target is operator.getitem
        and isinstance(node.args[0], torch.fx.Node)
        and _is_shape_query(node.args[0])
    )


def _consumers(node: torch.fx.Node) -> list[torch.fx.Node]:
    return [user for user in node.users if not _is_shape_query(user)]


def _node_op(node: torch.fx.Node, root: nn.Module) -> _Op:
    label = node.name
    if node.op == "call_module":
        return _module_op(str(node.target), root.get_submodule(str(node.target)))
    others = [a for a in (*node.args[1:], *node.kwargs.values()) if isinstance(a, torch.fx.Node)]
    if node.op == "call_function":
        target = node.target
        if target in _POINTWISE_FUNCTIONS and not others:
            args, kwargs = node.args[1:], dict(node.kwargs)
            return _Op("pointwise", label, fn=lambda c: target(c, *args, **kwargs))
        if target in _IDENTITY_FUNCTIONS:
            return _Op("identity", label)
        if target in _POOL_FUNCTIONS:
            return _Op("pool", label)
        if target is torch.flatten:
            _check_flatten(node)
            return _Op("flatten", label)
    elif node.op == "call_method":
        if node.target in _POINTWISE_METHODS and not others:
            fn = getattr(torch, str(node.target))
            return _Op("pointwise", label, fn=fn)
        if node.target in _IDENTITY_METHODS and not others:
            return _Op("identity", label)
        if node.target == "flatten":
            _check_flatten(node)
            return _Op("flatten", label)
        if node.target in ("view", "reshape"):
            _check_view(node)
            return _Op("flatten", label)
    raise NotImplementedError(
        f"cannot compact through {node.op} {getattr(node.target, '__name__', node.target)!r} "
        f"(node {label!r}) between two pruned layers; {_CHAIN_HELP}"
    )


def _check_flatten(node: torch.fx.Node) -> None:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    if start != 1 or end != -1:
        raise NotImplementedError(
            f"cannot compact through flatten node {node.name!r}: only flatten(x, 1) is "
            f"supported, got start_dim={start!r}, end_dim={end!r}"
        )


def _check_view(node: torch.fx.Node) -> None:
    shape = node.args[1:]
    if len(shape) == 1 and isinstance(shape[0], tuple | list):
        shape = tuple(shape[0])
    ok = (
        len(shape) == 2
        and shape[1] == -1
        and isinstance(shape[0], torch.fx.Node)
        and _is_shape_query(shape[0])
    )
    if not ok:
        raise NotImplementedError(
            f"cannot compact through {node.target} node {node.name!r} with shape {shape!r}: "
            "only x.view(x.size(0), -1) / torch.flatten(x, 1) are supported (a hard-coded "
            "feature count would be wrong once channels are removed)"
        )


def _fx_chain(module: nn.Module, graph: torch.fx.Graph) -> list[_Op]:
    layer_nodes = [
        node
        for node in graph.nodes
        if node.op == "call_module"
        and isinstance(module.get_submodule(str(node.target)), _PRUNABLE_TYPES)
    ]
    if not layer_nodes:
        return []
    targets = [node.target for node in layer_nodes]
    shared = sorted({str(t) for t in targets if targets.count(t) > 1})
    if shared:
        raise NotImplementedError(f"cannot compact: layer(s) {shared} are called more than once")
    ops = [_node_op(layer_nodes[0], module)]
    node = layer_nodes[0]
    while node is not layer_nodes[-1]:
        consumers = _consumers(node)
        if len(consumers) != 1:
            raise NotImplementedError(
                f"cannot compact: the output of node {node.name!r} is used by "
                f"{len(consumers)} operations {[c.name for c in consumers]}; residual/skip "
                f"connections and branches are not supported ({_CHAIN_HELP})"
            )
        node = consumers[0]
        if node.op == "output":
            break
        ops.append(_node_op(node, module))
    on_chain = {id(op.module) for op in ops}
    missing = [
        str(n.target)
        for n in layer_nodes
        if id(module.get_submodule(str(n.target))) not in on_chain
    ]
    if missing:
        raise NotImplementedError(
            f"cannot compact: layer(s) {missing} are not on the chain from the first to the last "
            f"layer (branches or residual connections are not supported; {_CHAIN_HELP})"
        )
    return ops


def _sequential_leaves(seq: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    leaves = []
    for name, child in seq.named_children():
        if isinstance(child, nn.Sequential):
            leaves += _sequential_leaves(child, f"{prefix}{name}.")
        else:
            leaves.append((f"{prefix}{name}", child))
    return leaves


def _sequential_chain(module: nn.Module, reason: str) -> list[_Op]:
    """Chain of a module whose forward cannot be traced, read from its Sequentials.

    Assumes ``forward(x) = layers(x)`` or ``classifier(features(x))`` (with an optional flatten
    in between).
    """
    if isinstance(module, nn.Sequential):
        leaves = _sequential_leaves(module, "")
    elif isinstance(getattr(module, "layers", None), nn.Sequential):
        leaves = _sequential_leaves(module.layers, "layers.")
    elif isinstance(getattr(module, "features", None), nn.Sequential) and isinstance(
        getattr(module, "classifier", None), nn.Sequential
    ):
        leaves = [
            *_sequential_leaves(module.features, "features."),
            ("<flatten between features and classifier>", nn.Flatten()),
            *_sequential_leaves(module.classifier, "classifier."),
        ]
    else:
        raise NotImplementedError(
            f"cannot compact {type(module).__name__}: its forward could not be traced with "
            f"torch.fx ({reason}) and it is neither an nn.Sequential nor exposes its chain as "
            "`layers` or `features` + `classifier` nn.Sequential attributes"
        )
    chain = {id(sub) for _, sub in leaves}
    outside = [
        name
        for name, sub in module.named_modules()
        if isinstance(sub, _PRUNABLE_TYPES) and id(sub) not in chain
    ]
    if outside:
        raise NotImplementedError(
            f"cannot compact {type(module).__name__}: layer(s) {outside} are outside its "
            "Sequential chain and its forward could not be traced with torch.fx "
            f"({reason})"
        )
    positions = [i for i, (_, sub) in enumerate(leaves) if isinstance(sub, _PRUNABLE_TYPES)]
    if not positions:
        return []
    return [_module_op(name, sub) for name, sub in leaves[positions[0] : positions[-1] + 1]]


def _chain(module: nn.Module) -> list[_Op]:
    """The ops from the first to the last Linear/Conv layer; NotImplementedError if no chain."""
    if isinstance(module, _PRUNABLE_TYPES):
        return [_module_op("", module)]
    try:
        graph = torch.fx.Tracer().trace(module)
    except Exception as exc:  # any tracing failure: read the chain from the Sequentials
        return _sequential_chain(module, f"{type(exc).__name__}: {exc}".splitlines()[0])
    return _fx_chain(module, graph)


def _norms_after(module: nn.Module) -> dict[str, list[nn.Module]]:
    """BatchNorm layers fed by each layer's output (through pointwise ops / pooling only)."""
    try:
        ops = _chain(module)
    except NotImplementedError:
        return {}
    names = {id(sub): name for name, sub in module.named_modules()}
    out: dict[str, list[nn.Module]] = {}
    current = None
    for op in ops:
        if op.kind == "layer":
            current = out.setdefault(names[id(op.module)], [])
        elif op.kind == "norm" and current is not None:
            current.append(op.module)
        elif op.kind not in ("pointwise", "identity", "pool"):
            current = None
    return out


# ----------------------------------------------------------------------------- compact
def compact(module: nn.Module) -> nn.Module:
    """Physically remove dead units of a structurally pruned network.

    Returns a new, plain (unpruned) module of the same class whose ``Linear`` / ``Conv``
    layers are smaller: every output unit (row / filter) whose effective weights are all zero
    is removed, together with its ``BatchNorm`` channel and the matching input columns /
    channels of the next layer (with a ``Flatten`` in between, the whole ``H*W`` block of the
    next ``Linear``'s inputs). The outputs of the last layer (the classes) are kept.

    A removed unit outputs a constant (its bias, mapped through the BatchNorm and activation
    that follow it). Units pruned by :func:`prune_module` with a structured method are dead
    (weights, bias and BatchNorm channel masked) and that constant is zero. Otherwise the
    constant is folded into the next layer's bias, which is exact for a ``Linear`` and for a
    ``Conv`` without zero padding; a unit whose non-zero constant feeds a zero-padded ``Conv``
    is kept. The outputs of the compact module therefore equal those of ``module`` in eval
    mode (up to float rounding); in training mode as well when every removed unit is dead.

    Parameters
    ----------
    module : torch.nn.Module
        Typically pruned with ``structured_l1`` / ``structured_l2``; not modified. Supported:
        chains ``Linear/Conv -> [BatchNorm, element-wise activation, dropout, pooling,
        flatten]* -> Linear/Conv``, found by tracing ``forward`` with ``torch.fx``, or, when
        it cannot be traced, in an ``nn.Sequential`` or in the ``layers`` (or ``features`` then
        ``classifier``) ``nn.Sequential`` attributes, assumed to make up ``forward``.

    Returns
    -------
    torch.nn.Module
        The smaller, plain module (in the training mode of ``module``).

    Raises
    ------
    NotImplementedError
        For an architecture that is not such a chain (residual blocks, branches, grouped
        convolutions, layers used twice, reshapes that hard-code a size, ...); the message
        names the layer or operation and why.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> small = compact(prune_module(net, 0.5, "structured_l2"))
    >>> small[0].out_features, small[2].in_features
    (8, 8)
    """
    _check_module(module)
    small = unpruned_copy(module)
    ops = _chain(small)
    positions = [i for i, op in enumerate(ops) if op.kind == "layer"]
    with torch.no_grad():
        for start, stop in zip(positions, positions[1:], strict=False):
            _compact_segment(ops[start], ops[start + 1 : stop], ops[stop])
    return small


def _compact_segment(first: _Op, between: list[_Op], second: _Op) -> None:
    """Remove the dead output units of ``first`` and the matching inputs of ``second``."""
    a, b = first.module, second.module
    a_conv = not isinstance(a, nn.Linear)
    units = a.weight.shape[0]
    dead = ~a.weight.flatten(1).bool().any(dim=1)
    if not bool(dead.any()):
        return

    # constant output of each unit with zero weights, mapped through the ops in between
    const = a.bias.detach().clone() if a.bias is not None else a.weight.new_zeros(units)
    zero_only = False  # True once a pooling only keeps a zero channel constant
    flattened = False
    for op in between:
        if op.kind == "norm":
            if op.module.num_features != units:
                raise NotImplementedError(
                    f"cannot compact: {op.label!r} has {op.module.num_features} features but "
                    f"layer {first.label!r} outputs {units}"
                )
            const = _norm_constant(op.module, const)
        elif op.kind == "pointwise":
            const = op.fn(const)
        elif op.kind == "pool":
            if not a_conv or flattened:
                raise NotImplementedError(
                    f"cannot compact: pooling {op.label!r} after a Linear layer or a flatten "
                    "is not supported"
                )
            zero_only = zero_only or op.zero_only
        elif op.kind == "flatten":
            flattened = True

    span = _input_span(first, second, units, flattened)
    nonzero = const != 0
    if isinstance(b, nn.Linear):
        foldable = not zero_only
    else:
        padding = b.padding
        unpadded = padding == "valid" or (
            not isinstance(padding, str) and all(p == 0 for p in padding)
        )
        foldable = not zero_only and (unpadded or b.padding_mode != "zeros")
    removable = dead & (~nonzero | foldable)
    if bool(removable.all()):
        removable[0] = False  # keep one unit: no zero-sized layers
    if not bool(removable.any()):
        return
    keep = ~removable

    fold = removable & nonzero
    if bool(fold.any()):
        if isinstance(b, nn.Linear):
            block = b.weight.view(b.out_features, units, span)[:, fold, :].sum(dim=2)
        else:
            block = b.weight[:, fold].flatten(2).sum(dim=2)
        shift = block @ const[fold].to(block.dtype)
        if b.bias is None:
            b.bias = nn.Parameter(torch.zeros_like(shift))
        b.bias.add_(shift)

    _keep_outputs(a, keep)
    for op in between:
        if op.kind == "norm":
            _keep_norm_channels(op.module, keep)
    _keep_inputs(b, keep, span)


def _norm_constant(bn: nn.Module, const: torch.Tensor) -> torch.Tensor:
    """BatchNorm (eval mode) of a channel that is constant ``const``."""
    if bn.track_running_stats and bn.running_mean is not None:
        out = (const - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    else:  # batch statistics of a constant channel: mean = const, var = 0
        out = torch.zeros_like(const)
    if bn.affine:
        out = out * bn.weight + bn.bias
    return out


def _input_span(first: _Op, second: _Op, units: int, flattened: bool) -> int:
    """How many inputs of ``second`` each output unit of ``first`` feeds."""
    a, b = first.module, second.module
    a_conv = not isinstance(a, nn.Linear)
    if isinstance(b, nn.Linear):
        if a_conv and not flattened:
            raise NotImplementedError(
                f"cannot compact: Linear {second.label!r} is applied to the output of "
                f"convolution {first.label!r} without flattening it"
            )
        if a_conv and b.in_features % units == 0:
            return b.in_features // units
        if not a_conv and b.in_features == units:
            return 1
        raise NotImplementedError(
            f"cannot compact: layer {second.label!r} has {b.in_features} input features, "
            f"which do not match the {units} outputs of {first.label!r}"
        )
    if not a_conv or flattened:
        raise NotImplementedError(
            f"cannot compact: convolution {second.label!r} after "
            f"{'a flatten' if flattened else 'Linear ' + repr(first.label)} is not supported"
        )
    if b.in_channels != units:
        raise NotImplementedError(
            f"cannot compact: convolution {second.label!r} has {b.in_channels} input channels "
            f"but {first.label!r} outputs {units}"
        )
    return 1


def _replace(sub: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(sub, name)
    if isinstance(old, nn.Parameter):
        setattr(sub, name, nn.Parameter(value.clone(), requires_grad=old.requires_grad))
    else:
        setattr(sub, name, value.clone())


def _keep_outputs(layer: nn.Module, keep: torch.Tensor) -> None:
    _replace(layer, "weight", layer.weight[keep])
    if layer.bias is not None:
        _replace(layer, "bias", layer.bias[keep])
    if isinstance(layer, nn.Linear):
        layer.out_features = int(keep.sum())
    else:
        layer.out_channels = int(keep.sum())


def _keep_inputs(layer: nn.Module, keep: torch.Tensor, span: int) -> None:
    if isinstance(layer, nn.Linear):
        columns = keep.repeat_interleave(span)
        _replace(layer, "weight", layer.weight[:, columns])
        layer.in_features = int(columns.sum())
    else:
        _replace(layer, "weight", layer.weight[:, keep])
        layer.in_channels = int(keep.sum())


def _keep_norm_channels(bn: nn.Module, keep: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        if getattr(bn, name, None) is not None:
            _replace(bn, name, getattr(bn, name)[keep])
    bn.num_features = int(keep.sum())
