"""Vectorised percentile bootstrap of per-group means over evaluation rows.

A resample draws ``n`` rows with replacement from the ``n`` evaluation rows (as fairlearn's
``MetricFrame(n_boot=...)`` does), so group sizes vary between resamples and a small group can
be absent from one. Instead of materialising each resample, the rows are sorted by group once
and every resample is reduced to a vector of draw counts per row (one ``bincount``); the
per-group sums of all columns are then one matrix product per group::

    sums[b, g, :] = counts[b, rows_g] @ values[rows_g, :]

No Python loop over rows or resamples, only over chunks of resamples and over groups.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    validate_parameter_constraints,
)

#: Count matrix entries per chunk of resamples (bounds memory at about 8 bytes each).
_CHUNK_ELEMENTS = 2**22
#: Largest per-group spread of the values (rows x groups x columns) for the one-product path.
_BLOCK_ELEMENTS = 2**24


#: Constraints of the bootstrap arguments, in sklearn's ``validate_params`` vocabulary.
BOOTSTRAP_CONSTRAINTS = {
    "n_boot": [Interval(Integral, 1, None, closed="left"), None],
    "ci_quantiles": ["array-like", None],
    "random_state": ["random_state", np.random.Generator],
}


def _bad_quantiles(caller_name: str, what: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(
        f"The 'ci_quantiles' parameter of {caller_name} must be {what}. Got {got!r} instead."
    )


def check_bootstrap_params(
    n_boot: Any, ci_quantiles: Any, *, caller_name: str = "ExcessRiskFrame"
) -> tuple[int | None, tuple[float, ...] | None]:
    """Validate ``n_boot`` and ``ci_quantiles``; default the quantiles to a 95 % interval.

    Parameters
    ----------
    n_boot : int >= 1 or None
        Number of resamples (None: no intervals).
    ci_quantiles : array-like of float or None
        Strictly increasing quantiles in the open interval (0, 1); only with ``n_boot``.
    caller_name : str, default="ExcessRiskFrame"
        Who the messages say the arguments belong to.

    Returns
    -------
    n_boot : int or None
    ci_quantiles : tuple of float or None
        ``(0.025, 0.975)`` when ``n_boot`` is set and ``ci_quantiles`` is None.

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        A ``ValueError`` in sklearn's words (the parameter, what it must be, the value got):
        ``n_boot`` not an int >= 1; ``ci_quantiles`` empty, outside (0, 1), not increasing, or
        given without ``n_boot``.
    """
    validate_parameter_constraints(
        {name: BOOTSTRAP_CONSTRAINTS[name] for name in ("n_boot", "ci_quantiles")},
        {"n_boot": n_boot, "ci_quantiles": ci_quantiles},
        caller_name=caller_name,
    )
    if n_boot is None:
        if ci_quantiles is not None:
            raise InvalidParameterError(
                f"The 'ci_quantiles' parameter of {caller_name} needs n_boot: pass n_boot=1000 "
                f"(an int >= 1) to bootstrap intervals, or ci_quantiles=None. Got "
                f"{ci_quantiles!r} instead."
            )
        return None, None
    if ci_quantiles is None:
        return int(n_boot), (0.025, 0.975)
    try:
        quantiles = tuple(float(q) for q in np.ravel(np.asarray(ci_quantiles, dtype=object)))
    except (TypeError, ValueError):
        raise _bad_quantiles(caller_name, "a sequence of floats in (0, 1)", ci_quantiles) from None
    if not quantiles:
        raise _bad_quantiles(caller_name, "a non-empty sequence such as [0.025, 0.975]",
                             ci_quantiles)
    if not all(0.0 < q < 1.0 for q in quantiles):
        raise _bad_quantiles(caller_name, "quantiles in the open interval (0, 1)",
                             list(quantiles))
    if any(b <= a for a, b in zip(quantiles, quantiles[1:], strict=False)):
        raise _bad_quantiles(caller_name, "strictly increasing", list(quantiles))
    return int(n_boot), quantiles


def bootstrap_group_sums(
    values: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
    n_boot: int,
    random_state: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group column sums and row counts of ``n_boot`` row resamples.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_columns)
        Per-sample values (NaN allowed: they propagate to the sums of their group).
    codes : ndarray of shape (n_samples,)
        Group code of each row, in ``0 .. n_groups - 1``.
    n_groups : int
        Number of groups.
    n_boot : int
        Number of resamples.
    random_state : None, int or numpy.random.Generator
        Seed of the draws; the same seed gives the same resamples.

    Returns
    -------
    sums : ndarray of shape (n_boot, n_groups, n_columns)
    counts : ndarray of shape (n_boot, n_groups)
        Rows drawn from each group in each resample (0: the group is absent).
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    n_samples, n_columns = values.shape
    order = np.argsort(codes, kind="stable")
    # a column of ones makes the row counts fall out of the same matrix product
    sorted_values = np.column_stack([values[order], np.ones(n_samples)])
    sorted_codes = codes[order]
    bounds = np.searchsorted(sorted_codes, np.arange(n_groups + 1))
    block = n_samples * n_groups * (n_columns + 1) <= _BLOCK_ELEMENTS
    if block:  # one product for all groups: values spread into one column block per group
        spread = np.zeros((n_samples, n_groups, n_columns + 1))
        spread[np.arange(n_samples), sorted_codes] = sorted_values
        spread = spread.reshape(n_samples, -1)
    rng = np.random.default_rng(random_state)
    result = np.zeros((n_boot, n_groups, n_columns + 1))
    chunk = max(1, _CHUNK_ELEMENTS // max(n_samples, 1))
    index_type = np.int32 if chunk * n_samples < np.iinfo(np.int32).max else np.int64
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        # Uniform draws over the sorted rows are uniform draws over the rows.
        draws = rng.integers(0, n_samples, size=(size, n_samples), dtype=index_type)
        draws += (np.arange(size, dtype=index_type) * n_samples)[:, None]
        weights = np.bincount(draws.ravel(), minlength=size * n_samples)
        del draws
        weights = weights.reshape(size, n_samples).astype(np.float64)
        if block:
            result[start : start + size] = (weights @ spread).reshape(size, n_groups, -1)
            continue
        for g in range(n_groups):
            low, high = bounds[g], bounds[g + 1]
            result[start : start + size, g] = weights[:, low:high] @ sorted_values[low:high]
    sums, counts = result[..., :-1], result[..., -1]
    return sums, counts


def quantiles(samples: np.ndarray, ci_quantiles: tuple[float, ...]) -> np.ndarray:
    """``nanquantile`` over the first axis: resamples where a value is undefined (its group was
    not drawn) are skipped; a value undefined in every resample gets a NaN interval."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        return np.nanquantile(samples, ci_quantiles, axis=0)
