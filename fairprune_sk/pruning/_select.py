"""Which tensors pruning acts on, and the constraints of its arguments.

Pruning acts on the ``weight`` of every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` submodule; this
module lists them (honouring ``keep_dense``) and holds the sklearn constraints of ``rate``,
``method``, ``min_layer_density`` and ``module`` that the public functions check with
``validate_params`` (:func:`validate_rate` and :func:`validate_method` check one value for
callers outside this package).
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Real
from typing import Any

from torch import nn

from .._validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    check_args,
    validate_params,
)

__all__ = [
    "DATA_DRIVEN_METHODS",
    "PRUNING_METHODS",
    "prunable_tensors",
    "validate_method",
    "validate_rate",
]

#: The methods that rank weights with data: ``prune_module`` needs ``X``, ``y`` and ``groups``.
DATA_DRIVEN_METHODS: tuple[str, ...] = ("fair_taylor", "fair_taylor_structured")

PRUNING_METHODS: tuple[str, ...] = (
    "global_magnitude",
    "layer_magnitude",
    "random",
    "structured_l1",
    "structured_l2",
    *DATA_DRIVEN_METHODS,
)

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_KEEP_DENSE_ALIASES = ("first", "last")

#: sklearn constraints of the pruning arguments (``validate_params`` vocabulary).
RATE: list[Any] = [Interval(Real, 0.0, 1.0, closed="left")]
METHOD: list[Any] = [StrOptions(set(PRUNING_METHODS))]
DENSITY: list[Any] = [Interval(Real, 0.0, 1.0, closed="both")]
KEEP_DENSE: list[Any] = [str, "array-like"]
MODULE: list[Any] = [nn.Module]


# ----------------------------------------------------------------------------- validation
def validate_rate(rate: Any, name: str = "rate", caller_name: str | None = None) -> float:
    """Check a pruning rate and return it as a float.

    Parameters
    ----------
    rate : float
        Fraction of weights to prune, in ``[0, 1)``.
    name : str, default="rate"
        Name of the argument, used in the error message.
    caller_name : str, optional
        The function or method the argument belongs to, named in the error message.

    Returns
    -------
    float

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        A ``ValueError``: ``rate`` is not a real number in ``[0, 1)``.

    Examples
    --------
    >>> from fairprune_sk.pruning import validate_rate
    >>> validate_rate(0.5)
    0.5
    >>> validate_rate(1.0, caller_name="prune")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'rate' parameter of prune must \
be a float in the range [0.0, 1.0). Got 1.0 instead.
    """
    check_args({name: RATE}, {name: rate}, caller_name)
    return float(rate)


def validate_method(method: Any, caller_name: str | None = None) -> str:
    """Check a pruning method name and return it.

    Parameters
    ----------
    method : str
        One of :data:`PRUNING_METHODS`.
    caller_name : str, optional
        The function or method the argument belongs to, named in the error message.

    Returns
    -------
    str

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        A ``ValueError``: ``method`` is not one of :data:`PRUNING_METHODS`.

    Examples
    --------
    >>> from fairprune_sk.pruning import validate_method
    >>> validate_method("random")
    'random'
    """
    check_args({"method": METHOD}, {"method": method}, caller_name)
    return method


# ----------------------------------------------------------------------------- selection
@validate_params(
    {"module": MODULE, "keep_dense": KEEP_DENSE, "structured": ["boolean"]},
    prefer_skip_nested_validation=True,
)
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
    layers = [
        (name, sub) for name, sub in module.named_modules() if isinstance(sub, PRUNABLE_TYPES)
    ]
    names = [name for name, _ in layers]
    excluded = _resolve_keep_dense(keep_dense, names)
    if structured and names:
        excluded.add(names[-1])
    return [(name, sub, "weight") for name, sub in layers if name not in excluded]


def _resolve_keep_dense(keep_dense, names: list[str]) -> set[str]:
    requested = [keep_dense] if isinstance(keep_dense, str) else list(keep_dense)
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
        # validate_params' wrapper puts the public function the user called in the message
        raise InvalidParameterError(
            "The 'keep_dense' parameter of prunable_tensors must be names of prunable layers among "
            f"{list(_KEEP_DENSE_ALIASES) + names!r}. Got unknown name(s) {unknown!r} instead."
        )
    return resolved
