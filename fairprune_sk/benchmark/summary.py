"""Summaries over seeds: means with Student-t confidence intervals, flat and printable forms.

:func:`summarize` gives, per method × rate, the mean over seeds and a Student-t confidence
interval of the mean (95 % by default): with 3 seeds the half-width is 2.48 standard
deviations, so a difference between methods smaller than that is not shown by the sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_CONFIDENCE", "seed_interval", "summarize", "flat_summary", "format_summary"]

#: Confidence level of the intervals over seeds.
DEFAULT_CONFIDENCE = 0.95


def seed_interval(mean: Any, std: Any, n: Any,
                  confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Student-t confidence interval of a mean over ``n`` seeds.

    ``mean ± t_{(1 + confidence) / 2, n - 1} · std / sqrt(n)``, with ``std`` the sample standard
    deviation (``ddof=1``). NaN where ``n < 2``: one seed says nothing about the seed noise.

    Parameters
    ----------
    mean, std, n : array-like of the same shape
        Mean, sample standard deviation and number of (non-NaN) seeds.
    confidence : float in (0, 1), default=0.95
        Coverage of the interval.

    Returns
    -------
    low, high : ndarray
    """
    from scipy import stats

    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = np.where(n >= 2, n - 1, np.nan)
        half = stats.t.ppf(0.5 + float(confidence) / 2, dof) * std / np.sqrt(n)
    return mean - half, mean + half


def summarize(table: pd.DataFrame, confidence: float = DEFAULT_CONFIDENCE) -> pd.DataFrame:
    """Mean over seeds and a Student-t confidence interval of it, per method × rate.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`compare_methods` (or any table with ``method``, ``rate``, ``seed`` and
        numeric columns).
    confidence : float in (0, 1), default=0.95
        Coverage of the intervals (:func:`seed_interval`).

    Returns
    -------
    pandas.DataFrame
        Indexed by (``method``, ``rate``) in the order of first appearance; columns a
        ``MultiIndex`` (metric, ``mean`` / ``std`` / ``ci_low`` / ``ci_high``) plus
        ``("n_seeds", "")``. NaN values (ξ of ``threshold``) are left out of the mean and the
        interval; with a single seed the interval (and the std) is NaN.
    """
    missing = [c for c in ("method", "rate", "seed") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the column(s) {missing}; pass compare_methods' output")
    metrics = [c for c in table.columns
               if c not in ("method", "rate", "seed") and pd.api.types.is_numeric_dtype(table[c])]
    grouped = table.groupby(["method", "rate"], sort=False)
    stats = grouped[metrics].agg(["mean", "std", "count"])
    parts = {}
    for metric in metrics:
        mean, std, n = (stats[(metric, k)] for k in ("mean", "std", "count"))
        low, high = seed_interval(mean, std, n, confidence)
        parts[(metric, "mean")] = mean
        parts[(metric, "std")] = std
        parts[(metric, "ci_low")] = pd.Series(low, index=stats.index)
        parts[(metric, "ci_high")] = pd.Series(high, index=stats.index)
    summary = pd.DataFrame(parts, index=stats.index)
    summary.columns = pd.MultiIndex.from_tuples(summary.columns)
    summary[("n_seeds", "")] = grouped["seed"].nunique()
    return summary


def flat_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarize`'s output with flat columns ``<metric>_mean``, ``<metric>_ci_low``, ...

    (the schema of the benchmark's ``summary.csv``), ``method`` and ``rate`` as columns.
    """
    flat = summary.copy()
    flat.columns = [f"{a}_{b}" if b else a for a, b in flat.columns]
    return flat.reset_index()


def format_summary(summary: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``mean [ci_low, ci_high]`` strings of :func:`summarize`'s output, for printing or Markdown.

    With a single seed (no interval) only the mean is shown.
    """
    columns = [c for c in (columns or summary.columns.get_level_values(0).unique())
               if c != "n_seeds"]
    out = pd.DataFrame(index=summary.index)
    for column in columns:
        mean = summary[(column, "mean")]
        low, high = summary[(column, "ci_low")], summary[(column, "ci_high")]
        out[column] = [
            "nan" if np.isnan(m) else
            (f"{m:.4f}" if np.isnan(lo) else f"{m:.4f} [{lo:.4f}, {hi:.4f}]")
            for m, lo, hi in zip(mean, low, high, strict=True)
        ]
    out["n_seeds"] = summary[("n_seeds", "")]
    return out

