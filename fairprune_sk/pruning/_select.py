"""Which tensors pruning acts on, and the checks of its arguments.

Pruning acts on the ``weight`` of every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` submodule; this
module lists them (honouring ``keep_dense``) and validates ``rate``, ``method`` and
``min_layer_density`` (each checked once, at the public entry point that receives it).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

from torch import nn

__all__ = ["PRUNING_METHODS", "prunable_tensors", "validate_method", "validate_rate"]

PRUNING_METHODS: tuple[str, ...] = (
    "global_magnitude",
    "layer_magnitude",
    "random",
    "structured_l1",
    "structured_l2",
)

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
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
    >>> from fairprune_sk.pruning import validate_rate
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
    >>> from fairprune_sk.pruning import validate_method
    >>> validate_method("random")
    'random'
    """
    if not isinstance(method, str) or method not in PRUNING_METHODS:
        raise ValueError(f"method must be one of {PRUNING_METHODS}; got {method!r}")
    return method


def validate_density(value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"min_layer_density must be a float in [0, 1]; got {value!r}")
    return float(value)


def check_module(module) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")


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
    >>> from torch import nn
    >>> from fairprune_sk.pruning import prunable_tensors
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [name for name, _, _ in prunable_tensors(net)]
    ['0', '2']
    >>> [name for name, _, _ in prunable_tensors(net, keep_dense=["first"])]
    ['2']
    """
    check_module(module)
    layers = [
        (name, sub) for name, sub in module.named_modules() if isinstance(sub, PRUNABLE_TYPES)
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
