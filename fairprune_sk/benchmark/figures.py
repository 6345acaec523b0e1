"""Figures of a benchmark sweep (matplotlib, Agg, PNG), in the spirit of the paper's.

- :func:`plot_group_accuracy`: per-group test accuracy against the pruning rate, one panel per
  method (Tran et al. 2022, Fig. 1).
- :func:`plot_method_comparison`: overall test accuracy and fairness violation ξ against the
  pruning rate, one line per method, mean ± std over seeds (the paper's Fig. 5).

The figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas directly, so
importing this module neither needs a display nor changes pyplot's backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_group_accuracy", "plot_method_comparison", "plot_sweep"]

_REQUIRED = ("method", "rate", "seed", "group", "accuracy_after")


def _check_table(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"the results table lacks the column(s) {missing}; pass the table written by "
            "fairprune benchmark (results.csv) or returned by run_sweep"
        )
    if table.empty:
        raise ValueError("the results table is empty: nothing to plot")


def _new_figure(n_panels: int, *, width: float = 4.2, height: float = 3.4,
                max_columns: int = 3, sharey: bool = False) -> tuple[Figure, list]:
    columns = min(n_panels, max_columns)
    rows = math.ceil(n_panels / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False, sharey=sharey).ravel().tolist()
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    return figure, axes[:n_panels]


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def plot_group_accuracy(table: pd.DataFrame, path: str | Path, *,
                        methods: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Per-group test accuracy against the pruning rate, one panel per method (paper Fig. 1).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per method × rate × seed × group, with ``method``, ``rate``, ``seed``,
        ``group``, ``accuracy_after`` (and ``count`` to order the legend by group size).
    path : str or Path
        PNG file to write (folders are created).
    methods : sequence of str, optional
        Methods to draw, in this order; all of the table's by default.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    _check_table(table, _REQUIRED)
    methods = list(dict.fromkeys(table["method"])) if methods is None else list(methods)
    if "count" in table.columns:
        sizes = table.groupby("group", sort=False)["count"].mean().sort_values(ascending=False)
        groups = list(sizes.index)
    else:
        groups = list(dict.fromkeys(table["group"]))
    figure, axes = _new_figure(len(methods), sharey=True)
    colors = _colors(len(groups))
    for ax, method in zip(axes, methods, strict=True):
        part = table[table["method"] == method]
        for color, group in zip(colors, groups, strict=True):
            rows = part[part["group"] == group]
            if rows.empty:
                continue
            stats = rows.groupby("rate")["accuracy_after"].agg(["mean", "std"]).sort_index()
            label = str(group)
            if "count" in rows.columns:
                label += f" (n={int(rows['count'].iloc[0])})"
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0), marker="o",
                        markersize=3, capsize=2, color=color, label=label)
        ax.set_title(method)
        ax.set_xlabel("pruning rate")
        ax.set_ylabel("test accuracy")
        ax.tick_params(labelleft=True)
        ax.grid(alpha=0.3)
    _legend(figure, axes, "group")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _method_stats(table: pd.DataFrame) -> pd.DataFrame:
    """Per method × rate × seed: overall accuracy and ξ (one row per run)."""
    columns = ["accuracy", "xi"]
    return table.groupby(["method", "rate", "seed"], sort=False)[columns].first().reset_index()


def plot_method_comparison(table: pd.DataFrame, path: str | Path, *,
                           title: str | None = None) -> Path:
    """Test accuracy and ξ against the pruning rate, one line per method (paper Fig. 5).

    Parameters
    ----------
    table : pandas.DataFrame
        The per-group results table (run-level columns ``accuracy`` and ``xi`` repeated on
        every group row) or :func:`~fairprune_sk.compare.compare_methods`' table.
    path : str or Path
        PNG file to write.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    ``threshold`` has no probabilities, so no ξ: it is left out of the ξ panel.
    """
    _check_table(table, ("method", "rate", "seed", "accuracy", "xi"))
    runs = _method_stats(table)
    methods = list(dict.fromkeys(runs["method"]))
    figure, axes = _new_figure(2)
    colors = _colors(len(methods))
    for ax, column, label in ((axes[0], "accuracy", "test accuracy"),
                              (axes[1], "xi", "fairness violation ξ (test)")):
        for color, method in zip(colors, methods, strict=True):
            part = runs[runs["method"] == method]
            stats = part.groupby("rate")[column].agg(["mean", "std"]).sort_index()
            if stats["mean"].isna().all():
                continue
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0), marker="o",
                        markersize=3, capsize=2, color=color, label=method)
        ax.set_xlabel("pruning rate")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    _legend(figure, axes, "method")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _legend(figure: Figure, axes: list, title: str) -> None:
    """One legend for the figure, outside the panels on the right (no data hidden)."""
    handles, labels = {}, []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        figure.legend([handles[label] for label in labels], labels, loc="outside right upper",
                      fontsize="small", title=title)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_sweep(table: pd.DataFrame, out: str | Path, *, title: str | None = None) -> list[Path]:
    """Both figures of a sweep into the folder ``out``.

    Returns
    -------
    list of Path
        ``group_accuracy.png`` and ``methods.png``.
    """
    out = Path(out)
    return [
        plot_group_accuracy(table, out / "group_accuracy.png", title=title),
        plot_method_comparison(table, out / "methods.png", title=title),
    ]
