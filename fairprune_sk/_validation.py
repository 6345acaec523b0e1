"""Shared argument checks, and THE one ``random_state`` -> torch seed helper.

Every module that checks a plain argument (an int, a real, a choice) or turns sklearn's
``random_state`` into a torch seed imports it from here, so the messages and the seeding are
the same everywhere. Estimator *parameters* go through sklearn's ``_parameter_constraints``
(:func:`check_params`); these helpers are for the arguments of functions and methods.

Seeding convention (:func:`torch_seed`): ``None`` is no seed (torch's global RNG as it is);
an int ``s`` is the seed ``s + offset`` itself (``random_state=0`` trains like
``torch.manual_seed(0)``); a ``numpy.random.RandomState`` or ``Generator`` gives one draw
(so it advances, as sklearn's estimators do with it). :func:`torch_generator` builds a
``torch.Generator`` from the same seed, drawing it from numpy's global RNG for ``None`` (as
sklearn's ``check_random_state(None)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import validate_parameter_constraints

__all__ = [
    "check_choice",
    "check_int",
    "check_params",
    "check_real",
    "torch_generator",
    "torch_seed",
]

#: torch seeds are taken modulo this (``torch.manual_seed`` accepts 64-bit values).
_SEED_MODULUS = 2**63 - 1
_DRAW_HIGH = 2**31 - 1


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (booleans rejected), at least ``minimum`` when given.

    Examples
    --------
    >>> check_int(3, "epochs", 0)
    3
    """
    if (isinstance(value, bool) or not isinstance(value, Integral)
            or (minimum is not None and value < minimum)):
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
    if (isinstance(value, bool) or not isinstance(value, Real) or value != value
            or (minimum is not None and not value >= minimum)):
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
    if not isinstance(value, str) or value not in choices:
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
