"""Per-group bar chart of one :class:`ExcessRiskFrame` column, with bootstrap intervals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _label(group: Any) -> str:
    return " & ".join(map(str, group)) if isinstance(group, tuple) else str(group)


def plot_by_group(
    by_group: pd.DataFrame,
    column: str,
    *,
    intervals: tuple[pd.Series, pd.Series] | None,
    overall: float,
    description: str,
    ax: Any = None,
    sort: bool | str = True,
    quantiles: tuple[float, ...] | None = None,
) -> Any:
    """Horizontal bars of ``by_group[column]``, error bars from ``intervals``, n in the labels."""
    import matplotlib.pyplot as plt

    key = column if sort is True else sort
    table = by_group[list(dict.fromkeys([column, "count"] + ([key] if key else [])))].copy()
    if intervals is not None:
        table["low"], table["high"] = intervals[0], intervals[1]
    if key:
        table = table.sort_values(key, ascending=True, kind="stable")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.45 * len(table) + 1.6), layout="constrained")
    positions = np.arange(len(table))
    values = table[column].to_numpy()
    colors = np.where(values > 0, "#c0392b", "#2e86c1")
    error = None
    if intervals is not None:
        error = np.vstack([values - table["low"].to_numpy(), table["high"].to_numpy() - values])
        error = np.clip(np.nan_to_num(error), 0.0, None)
    ax.barh(positions, values, xerr=error, color=colors, alpha=0.85, capsize=3,
            error_kw={"elinewidth": 1.2})
    ax.set_yticks(positions, [f"{_label(g)} (n={n})" for g, n in zip(table.index, table["count"],
                                                                   strict=True)])
    ax.axvline(0.0, color="black", linewidth=0.8)
    if column not in ("excess_accuracy_gap",) and np.isfinite(overall):
        ax.axvline(overall, color="gray", linestyle="--", linewidth=1.0,
                   label=f"overall {overall:.3g}")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(f"{column}: {description}", fontsize=9)
    if quantiles is not None:
        level = 100 * (quantiles[-1] - quantiles[0])
        ax.set_title(f"{column} per group, {level:.0f} % bootstrap intervals", fontsize=10)
    else:
        ax.set_title(f"{column} per group", fontsize=10)
    return ax
