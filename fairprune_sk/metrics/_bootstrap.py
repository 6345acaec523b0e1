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
from numbers import Integral, Real
from typing import Any

import numpy as np

#: Count matrix entries per chunk of resamples (bounds memory at about 8 bytes each).
_CHUNK_ELEMENTS = 2**22
#: Largest per-group spread of the values (rows x groups x columns) for the one-product path.
_BLOCK_ELEMENTS = 2**24


def check_bootstrap_params(
    n_boot: Any, ci_quantiles: Any
) -> tuple[int | None, tuple[float, ...] | None]:
    """Validate ``n_boot`` and ``ci_quantiles``; default the quantiles to a 95 % interval.

    Returns
    -------
    n_boot : int or None
    ci_quantiles : tuple of float or None
        ``(0.025, 0.975)`` when ``n_boot`` is set and ``ci_quantiles`` is None.

    Raises
    ------
    ValueError
        ``n_boot`` not an int >= 1; ``ci_quantiles`` empty, outside (0, 1), not increasing, or
        given without ``n_boot``.
    """
    if n_boot is None:
        if ci_quantiles is not None:
            raise ValueError(
                f"ci_quantiles={ci_quantiles!r} needs n_boot: pass n_boot=1000 (an int >= 1) "
                "to bootstrap intervals"
            )
        return None, None
    if isinstance(n_boot, bool) or not isinstance(n_boot, Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be an int >= 1 (or None); got {n_boot!r}")
    if ci_quantiles is None:
        return int(n_boot), (0.025, 0.975)
    try:
        quantiles = tuple(float(q) for q in np.ravel(np.asarray(ci_quantiles, dtype=object)))
    except (TypeError, ValueError):
        raise ValueError(
            f"ci_quantiles must be a sequence of floats in (0, 1); got {ci_quantiles!r}"
        ) from None
    if not quantiles:
        raise ValueError("ci_quantiles is empty; pass e.g. [0.025, 0.975]")
    bad = [q for q in quantiles if not (isinstance(q, Real) and 0.0 < q < 1.0)]
    if bad:
        raise ValueError(f"ci_quantiles must lie in the open interval (0, 1); got {bad}")
    if any(b <= a for a, b in zip(quantiles, quantiles[1:], strict=False)):
        raise ValueError(f"ci_quantiles must be strictly increasing; got {list(quantiles)}")
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
