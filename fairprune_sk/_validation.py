"""Shared argument checks, and THE one ``random_state`` -> torch seed helper.

Every module that checks an argument or turns sklearn's ``random_state`` into a torch seed
imports it from here, so the messages and the seeding are the same everywhere. The checks are
sklearn's own (``sklearn.utils._param_validation``), re-exported here so that the package
depends on that private sklearn module in one place:

- estimator *parameters*: ``_parameter_constraints``, checked by :func:`check_params`;
- public functions and methods: the :func:`validate_params` decorator;
- other arguments (constructors of modules, helpers that receive a name): :func:`check_args`.

All three say, in sklearn's words, which parameter is wrong, what it must be and what it got:
``The 'max_iter' parameter of top_hessian_eigenvalue must be an int in the range [1, inf).
Got 0 instead.`` (:class:`InvalidParameterError` is both a ``ValueError`` and a
``TypeError``). :func:`check_int`, :func:`check_real` and :func:`check_choice` test with the
same constraint objects and keep their short messages (``epochs must be an int >= 0; got -1``).

Seeding convention (:func:`torch_seed`): ``None`` is no seed (torch's global RNG as it is);
an int ``s`` is the seed ``s + offset`` itself (``random_state=0`` trains like
``torch.manual_seed(0)``); a ``numpy.random.RandomState`` or ``Generator`` gives one draw
(so it advances, as sklearn's estimators do with it). :func:`torch_generator` builds a
``torch.Generator`` from the same seed, drawing it from numpy's global RNG for ``None`` (as
sklearn's ``check_random_state(None)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    make_constraint,
    validate_parameter_constraints,
    validate_params,
)

__all__ = [
    "RANDOM_STATE",
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "Options",
    "StrOptions",
    "check_args",
    "check_choice",
    "check_int",
    "check_params",
    "check_real",
    "torch_generator",
    "torch_seed",
    "validate_params",
]

#: The constraints of a ``random_state`` argument: sklearn's (None, an int in [0, 2**32 - 1],
#: a ``numpy.random.RandomState``) and a ``numpy.random.Generator`` (see :func:`torch_seed`).
RANDOM_STATE: list[Any] = ["random_state", np.random.Generator]

#: torch seeds are taken modulo this (``torch.manual_seed`` accepts 64-bit values).
_SEED_MODULUS = 2**63 - 1
_DRAW_HIGH = 2**31 - 1


def check_args(
    constraints: Mapping[str, list[Any]],
    values: Mapping[str, Any],
    caller_name: str | None = None,
) -> None:
    """Check arguments against sklearn ``_param_validation`` constraints.

    The same test and message as sklearn's :func:`validate_params`, for code that cannot be
    decorated (a module's constructor, a helper told the argument's name).

    Parameters
    ----------
    constraints : mapping of str to list
        ``name: [constraint, ...]``; a value is valid if it satisfies one of them
        (:class:`Interval`, :class:`StrOptions`, a type, ``None``, ``"array-like"``,
        ``"random_state"``, ...).
    values : mapping of str to object
        ``name: value`` for the arguments to check; every name must be in ``constraints``.
    caller_name : str, optional
        The function, method or class the arguments belong to, named in the message.

    Raises
    ------
    InvalidParameterError
        Naming the first invalid argument, what it must be and the value got.

    Examples
    --------
    >>> check_args({"rate": [Interval(Real, 0, 1, closed="left")]}, {"rate": 0.5}, "prune")
    >>> check_args({"rate": [Interval(Real, 0, 1, closed="left")]}, {"rate": 1.5}, "prune")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'rate' parameter of prune must be \
a float in the range [0.0, 1.0). Got 1.5 instead.
    """
    for name, value in values.items():
        options = [make_constraint(constraint) for constraint in constraints[name]]
        if any(option.is_satisfied_by(value) for option in options):
            continue
        shown = [str(option) for option in options if not option.hidden]
        expected = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
        where = f" of {caller_name}" if caller_name else ""
        raise InvalidParameterError(
            f"The {name!r} parameter{where} must be {expected}. Got {value!r} instead."
        )


def _at_least(kind: type, minimum: float | None) -> Interval:
    """``[minimum, inf]``: a real bound includes ``inf`` (as the checks always have)."""
    if kind is Real:
        return Interval(Real, minimum, None, closed="both")
    return Interval(Integral, minimum, None, closed="neither" if minimum is None else "left")


def _satisfies(value: Any, constraint: Any) -> bool:
    """sklearn's test, with booleans refused as numbers (``True`` is no count)."""
    return not isinstance(value, bool) and constraint.is_satisfied_by(value)


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (booleans rejected), at least ``minimum`` when given.

    Examples
    --------
    >>> check_int(3, "epochs", 0)
    3
    """
    if not _satisfies(value, _at_least(Integral, minimum)):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an int{bound}; got {value!r}")
    return int(value)


def check_real(value: Any, name: str, minimum: float | None = None) -> float:
    """``value`` as a finite-or-infinite float (booleans and NaN rejected), at least ``minimum``.

    Examples
    --------
    >>> check_real(0.5, "tol", 0.0)
    0.5
    """
    if not _satisfies(value, _at_least(Real, minimum)):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be a real number{bound}; got {value!r}")
    return float(value)


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; the message lists them.

    Examples
    --------
    >>> check_choice("power", "method", ("power", "lanczos"))
    'power'
    """
    choices = tuple(choices)
    if not StrOptions(set(choices)).is_satisfied_by(value):
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def check_params(estimator: Any) -> None:
    """Check an estimator's ``_parameter_constraints`` (skorch validates only its own).

    The message names the parameter, the allowed values and the value got (sklearn's).
    """
    constraints = estimator._parameter_constraints
    validate_parameter_constraints(
        constraints,
        {name: getattr(estimator, name) for name in constraints},
        caller_name=type(estimator).__name__,
    )


def torch_seed(random_state: Any, offset: int = 0) -> int | None:
    """The torch seed of sklearn's ``random_state`` (None: don't seed).

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        An int is used as the seed itself (plus ``offset``); a random state gives one draw.
    offset : int, default=0
        Added to an int seed, so successive stages of one estimator (e.g. each
        ``partial_fit``) get different but reproducible seeds.

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        For any other ``random_state`` (booleans included).

    Examples
    --------
    >>> torch_seed(0), torch_seed(0, offset=3), torch_seed(None)
    (0, 3, None)
    """
    if random_state is None:
        return None
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return (int(random_state) + int(offset)) % _SEED_MODULUS
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, _DRAW_HIGH))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, _DRAW_HIGH))
    raise ValueError(
        "random_state must be None, an int, a numpy.random.RandomState or a "
        f"numpy.random.Generator; got {random_state!r}"
    )


def torch_generator(random_state: Any, offset: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`torch_seed` (torch's global RNG untouched).

    ``None`` draws the seed from numpy's global RNG (sklearn's convention), so
    ``np.random.seed`` makes it reproducible.

    Examples
    --------
    >>> a, b = torch_generator(0), torch_generator(0)
    >>> bool(torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b)))
    True
    """
    seed = torch_seed(random_state, offset)
    if seed is None:
        seed = int(np.random.randint(0, _DRAW_HIGH))
    return torch.Generator().manual_seed(seed)
