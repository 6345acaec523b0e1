"""Figures of the factors per group: :meth:`GroupDiagnostics.plot` (bars per group) and
:func:`plot_factor_scatter` (the paper's Figs. 2-4 as scatter plots with Spearman's ρ)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._validation import Interval, validate_params

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _label(key: Any) -> str:
    """A group's label: the values of an intersectional group joined by commas."""
    return ", ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def plot_group_factors(
    frame: pd.DataFrame, *, has_reference: bool, figsize: tuple[float, float] | None = None
):
    """Four panels of bars per group from ``GroupDiagnostics.by_group`` (``frame``).

    Gradient norm, Hessian eigenvalue, boundary closeness, and either the Theorem 1 bound and
    the second-order estimate beside the measured ``R(a)`` (``has_reference``) or the output
    gradient norm. Returns the ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt

    labels = [_label(key) for key in frame.index]
    positions = np.arange(len(labels))
    fig, axes = plt.subplots(2, 2, figsize=figsize or (10, 7), constrained_layout=True)
    panels = [
        ("gradient_norm", "group gradient norm ‖g_a‖"),
        ("hessian_max_eig", "top Hessian eigenvalue λ(H_a)"),
        ("boundary_closeness", "boundary closeness mean f(1 − f)"),
    ]
    for ax, (column, title) in zip(axes.flat, panels, strict=False):
        ax.bar(positions, frame[column].to_numpy(), color="tab:blue")
        ax.set_title(title)
    last = axes.flat[3]
    if has_reference:
        width = 0.27
        bars = [("bound", "Theorem 1 bound", "tab:orange"),
                ("taylor_estimate", "2nd-order estimate", "tab:purple"),
                ("excess_risk", "measured R(a)", "tab:green")]
        for k, (column, label, color) in enumerate(bars):
            last.bar(positions + (k - 1) * width, frame[column].to_numpy(), width,
                     label=label, color=color)
        # the bound is often orders of magnitude above R(a): a symmetric log scale
        # keeps both (and negative values) readable
        measured = float(np.nanmax(np.abs(frame["excess_risk"].to_numpy()), initial=0.0))
        last.set_yscale("symlog", linthresh=max(measured / 10, 1e-12))
        last.axhline(0.0, color="black", linewidth=0.5)
        last.set_title("excess risk R(a), symlog scale")
        last.legend(fontsize="x-small", loc="best")
    else:
        last.bar(positions, frame["input_grad_norm"].to_numpy(), color="tab:blue")
        last.set_title("output gradient norm mean ‖∇_θ f(x)‖")
    name = ", ".join(str(n) for n in frame.index.names if n is not None)
    for ax in axes.flat:
        ax.set_xticks(positions)
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ax.set_xlabel(name)
    return fig


# --------------------------------------------------------------------------------------------
# Scatter plots of the factors with Spearman's rho (the paper's Figs. 2-4)
# --------------------------------------------------------------------------------------------
#: Axis labels of the factor scatter plots, by column of ``GroupDiagnostics.by_group``.
_FACTOR_LABELS = {
    "gradient_norm": "group gradient norm ‖g_a‖",
    "hessian_max_eig": "top Hessian eigenvalue λ(H_a)",
    "boundary_closeness": "boundary closeness, mean p(1 − p) (higher: closer)",
    "input_grad_norm": "output gradient norm, mean ‖∇_θ f(x)‖",
    "count": "group size n_a",
    "accuracy_dense": "group accuracy of θ*",
    "accuracy_pruned": "group accuracy of the pruned net",
    "accuracy": "group accuracy",
    "excess_risk": "excess risk R(a)",
    "excess_accuracy_gap": "excess accuracy gap ψ_a",
    "bound": "Theorem 1 bound",
    "taylor_estimate": "second-order estimate of R(a)",
}
_SCATTER_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
#: Positive values spanning more than this ratio are drawn on a log axis.
_LOG_RATIO = 30.0


def _long_table(frames: Any, seed: str) -> pd.DataFrame:
    """One row per seed × group, with the columns ``group`` and ``seed``."""
    if isinstance(frames, pd.DataFrame):
        table = frames.copy()
        if "group" not in table.columns:
            table = table.assign(group=[_label(key) for key in table.index])
        if seed not in table.columns:
            table[seed] = 0
        return table.reset_index(drop=True)
    if hasattr(frames, "by_group") and not isinstance(frames, Mapping):
        frames = {0: frames}
    if not isinstance(frames, Mapping) or not frames:
        raise TypeError(
            "frames must be a DataFrame (one row per group, or per seed × group with the "
            f"columns 'group' and {seed!r}), a GroupDiagnostics, or a non-empty mapping "
            f"seed -> GroupDiagnostics or by_group DataFrame; got {type(frames).__name__}"
        )
    parts = []
    for key, frame in frames.items():
        frame = frame.by_group if hasattr(frame, "by_group") else frame
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"frames[{key!r}] must be a GroupDiagnostics or a DataFrame; got "
                            f"{type(frame).__name__}")
        parts.append(frame.assign(group=[_label(k) for k in frame.index], **{seed: key})
                     .reset_index(drop=True))
    return pd.concat(parts, ignore_index=True)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ (average ranks for ties); NaN if either side is constant."""
    from scipy import stats

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])


def spearman_with_interval(x: Any, y: Any, clusters: Any, *, n_boot: int = 2000,
                           confidence: float = 0.95,
                           random_state: int | None = 0) -> tuple[float, float, float]:
    """Spearman's ρ of ``x`` and ``y`` and a cluster-bootstrap percentile interval.

    The points are resampled by cluster (group): each resample draws as many groups as there
    are, with replacement, and keeps all of each drawn group's points (its seeds), so the
    interval accounts for the seeds of one group not being independent. Resamples in which
    ``x`` or ``y`` is constant are left out.

    Parameters
    ----------
    x, y : array-like of shape (n_points,)
        The plotted values.
    clusters : array-like of shape (n_points,)
        The group of each point.
    n_boot : int, default=2000
        Bootstrap resamples; 0 gives no interval (NaN bounds).
    confidence : float in (0, 1), default=0.95
        Coverage of the interval.
    random_state : int or None, default=0
        Seed of the resampling.

    Returns
    -------
    rho, low, high : float
        ρ over all points (NaN if ``x`` or ``y`` is constant) and the interval's bounds.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    codes = pd.factorize(np.asarray(clusters, dtype=object)[keep])[0]
    rho = _spearman(x, y)
    n_clusters = codes.max() + 1 if len(codes) else 0
    if np.isnan(rho) or n_boot == 0 or n_clusters < 3:
        return rho, float("nan"), float("nan")
    members = [np.flatnonzero(codes == c) for c in range(n_clusters)]
    rng = np.random.default_rng(random_state)
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    values = np.array([_spearman(x[rows], y[rows]) for rows in
                       (np.concatenate([members[c] for c in draw]) for draw in draws)])
    values = values[np.isfinite(values)]
    if not len(values):
        return rho, float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return rho, float(low), float(high)


def _rho_text(rho: float, low: float, high: float, n_points: int, n_groups: int,
              n_seeds: int) -> str:
    """``"Spearman ρ = -0.61 [-0.92, 0.15], 10 groups × 3 seeds"``."""
    points = f"{n_groups} groups × {n_seeds} seeds"
    if np.isnan(rho):
        return f"Spearman ρ undefined (a constant axis), {points}"
    interval = "" if np.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    return f"Spearman ρ = {rho:.2f}{interval}, {points}"


def _use_log(values: np.ndarray) -> bool:
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > _LOG_RATIO


_COMMON_CONSTRAINTS = {
    "frames": "no_validation",
    "pairs": [list, tuple],
    "rows": [str, None],
    "seed": [str],
    "n_boot": [Interval(Integral, 0, None, closed="left")],
    "confidence": [Interval(Real, 0, 1, closed="neither")],
    "random_state": [Interval(Integral, 0, None, closed="left"), None],
}


def _checked_table(frames: Any, pairs: Sequence[tuple[str, str]], rows: str | None,
                   seed: str) -> pd.DataFrame:
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2
                and all(isinstance(c, str) for c in pair)):
            raise ValueError(f"each of pairs must be an (x, y) pair of column names; got "
                             f"{pair!r}")
    if not len(pairs):
        raise ValueError("pairs is empty: name at least one (x, y) pair of columns")
    table = _long_table(frames, seed)
    needed = [c for pair in pairs for c in pair] + ([rows] if rows else [])
    missing = sorted({c for c in needed if c not in table.columns})
    if missing:
        raise ValueError(f"the table lacks the column(s) {missing} named by pairs / rows; it "
                         f"has {sorted(map(str, table.columns))}")
    return table


def _correlations(table: pd.DataFrame, pairs: Sequence[tuple[str, str]], rows: str | None,
                  seed: str, n_boot: int, confidence: float,
                  random_state: int | None) -> pd.DataFrame:
    records = []
    for row_value in (list(dict.fromkeys(table[rows])) if rows else [None]):
        part = table if rows is None else table[table[rows] == row_value]
        for x_column, y_column in pairs:
            x = part[x_column].to_numpy(dtype=np.float64)
            y = part[y_column].to_numpy(dtype=np.float64)
            finite = np.isfinite(x) & np.isfinite(y)
            rho, low, high = spearman_with_interval(
                x, y, part["group"].to_numpy(), n_boot=n_boot, confidence=confidence,
                random_state=random_state)
            records.append({"row": row_value, "x": x_column, "y": y_column, "rho": rho,
                            "low": low, "high": high, "n_points": int(finite.sum()),
                            "n_groups": int(part["group"][finite].nunique()),
                            "n_seeds": int(part[seed][finite].nunique())})
    return pd.DataFrame(records)


@validate_params(_COMMON_CONSTRAINTS, prefer_skip_nested_validation=True)
def factor_correlations(
    frames: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    rows: str | None = None,
    seed: str = "seed",
    n_boot: int = 2000,
    confidence: float = 0.95,
    random_state: int | None = 0,
) -> pd.DataFrame:
    """Spearman's ρ and its cluster-bootstrap interval of every panel of
    :func:`plot_factor_scatter` (same arguments, same numbers).

    Returns
    -------
    pandas.DataFrame
        One row per panel: ``row`` (the value of ``rows``' column, or None), ``x``, ``y``,
        ``rho``, ``low``, ``high`` (the interval; NaN without one), ``n_points``,
        ``n_groups`` and ``n_seeds``.

    Examples
    --------
    >>> import pandas as pd
    >>> from fairprune_sk.diagnostics import factor_correlations
    >>> table = pd.DataFrame({"group": list("abcdab"), "seed": [0, 0, 0, 0, 1, 1],
    ...                       "count": [10, 20, 30, 40, 12, 22],
    ...                       "gradient_norm": [0.4, 0.3, 0.2, 0.1, 0.5, 0.2]})
    >>> rho = factor_correlations(table, [("count", "gradient_norm")], n_boot=200)["rho"]
    >>> round(float(rho.iloc[0]), 2)
    -0.93
    """
    table = _checked_table(frames, pairs, rows, seed)
    return _correlations(table, pairs, rows, seed, n_boot, confidence, random_state)


@validate_params(
    {**_COMMON_CONSTRAINTS, "labels": [dict, None], "title": [str, None],
     "panel_size": [tuple]},
    prefer_skip_nested_validation=True,
)
def plot_factor_scatter(
    frames: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    rows: str | None = None,
    seed: str = "seed",
    labels: dict[str, str] | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    random_state: int | None = 0,
    title: str | None = None,
    panel_size: tuple[float, float] = (4.0, 3.3),
) -> Figure:
    """Scatter plots of per-group factors with Spearman's ρ and its interval (Figs. 2-4).

    The paper's Fig. 2 (gradient norm ``‖g_a‖`` against group size and accuracy, Proposition
    1), Fig. 3 (``λ(H_a)`` against boundary closeness, Theorem 2) and Fig. 4 (accuracy,
    gradient norm and boundary closeness per group after each mitigation), as scatter plots:
    one point per group and seed (colour: group, marker: seed), one panel per ``(x, y)`` pair
    and, with ``rows``, one row of panels per value of that column (e.g. the method). Each
    panel's title states Spearman's ρ over all its points and a ``confidence`` cluster-bootstrap
    percentile interval that resamples groups (all seeds of a drawn group together,
    :func:`spearman_with_interval`), so that ten groups measured on three seeds count as ten
    groups, not thirty independent points; :func:`factor_correlations` returns the same
    numbers as a table. Panels of one column share their x axis (so a mitigation that
    narrows the spread of a factor shows it); a positive axis spanning more than a factor 30
    is drawn on a log scale (ρ is unchanged by it).

    Parameters
    ----------
    frames : DataFrame, GroupDiagnostics or mapping
        The per-group values: a mapping ``seed -> GroupDiagnostics`` (or its ``by_group``),
        a single one (one seed), or a long DataFrame with one row per seed × group and the
        columns ``group`` and ``seed`` (and ``rows``' column).
    pairs : sequence of (str, str)
        ``(x column, y column)`` of each panel of a row.
    rows : str, optional
        A column of the long table whose values (in order of appearance) make the rows.
    seed : str, default="seed"
        The column that tells the seeds (markers) apart.
    labels : dict, optional
        Axis labels by column, over the defaults (``gradient_norm``: "group gradient norm
        ‖g_a‖", ``count``: "group size n_a", ... for the columns of ``by_group``).
    n_boot : int >= 0, default=2000
        Bootstrap resamples of the interval; 0 for none.
    confidence : float in (0, 1), default=0.95
        Coverage of the interval.
    random_state : int or None, default=0
        Seed of the bootstrap.
    title : str, optional
        The figure's heading, above a line that says how the interval is made.
    panel_size : (float, float), default=(4.0, 3.3)
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        Drawn on the Agg canvas (no pyplot state); ``figure.savefig(path)`` writes it. Each
        panel holds one ``PathCollection`` of points per group × seed, and its title (under
        the row's value) says ρ, the interval and the number of groups and seeds.

    Raises
    ------
    ValueError
        A column of ``pairs`` or ``rows`` that the table lacks, or a pair that is not two
        column names.

    Examples
    --------
    >>> import pandas as pd
    >>> from fairprune_sk.diagnostics import plot_factor_scatter
    >>> table = pd.DataFrame({"group": list("abcdab"), "seed": [0, 0, 0, 0, 1, 1],
    ...                       "count": [10, 20, 30, 40, 12, 22],
    ...                       "gradient_norm": [0.4, 0.3, 0.2, 0.1, 0.5, 0.2]})
    >>> figure = plot_factor_scatter(table, [("count", "gradient_norm")], n_boot=200)
    >>> figure.axes[0].get_title()
    'Spearman ρ = -0.93 [-1.00, -0.27], 4 groups × 2 seeds'
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    table = _checked_table(frames, pairs, rows, seed)
    stats = _correlations(table, pairs, rows, seed, n_boot, confidence, random_state)
    names = {**_FACTOR_LABELS, **(labels or {})}
    row_values = list(dict.fromkeys(table[rows])) if rows else [None]
    groups = list(dict.fromkeys(table["group"]))
    seeds = list(dict.fromkeys(table[seed]))
    cmap = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    colors = {group: cmap(k % cmap.N) for k, group in enumerate(groups)}
    markers = {s: _SCATTER_MARKERS[k % len(_SCATTER_MARKERS)] for k, s in enumerate(seeds)}
    n_rows, n_cols = len(row_values), len(pairs)
    width = panel_size[0] * n_cols + 0.4
    # as many legend columns as fit: about 0.075 in a character in the small font, plus the
    # marker and the gap
    longest = max(len(str(label)) for label in [*groups, f"{seed} {seeds[-1]}"])
    n_legend_columns = int(max(1, min(6, len(groups) + len(seeds),
                                      width // (0.075 * longest + 0.6))))
    legend_rows = int(np.ceil((len(groups) + len(seeds)) / n_legend_columns))
    figure = Figure(figsize=(width,
                             panel_size[1] * n_rows + 1.0 + 0.25 * legend_rows),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False, sharex="col")
    for (r, c), record in zip(np.ndindex(n_rows, n_cols), stats.itertuples(), strict=True):
        ax = axes[r, c]
        part = table if rows is None else table[table[rows] == row_values[r]]
        x = part[record.x].to_numpy(dtype=np.float64)
        y = part[record.y].to_numpy(dtype=np.float64)
        rho_text = _rho_text(record.rho, record.low, record.high, record.n_points,
                             record.n_groups, record.n_seeds)
        ax.set_title(rho_text if row_values[r] is None else f"{row_values[r]}\n{rho_text}",
                     fontsize="medium")
        for group in groups:
            for s in seeds:
                at = ((part["group"] == group) & (part[seed] == s)).to_numpy()
                if at.any():
                    ax.scatter(x[at], y[at], color=colors[group], marker=markers[s], s=26,
                               alpha=0.85, edgecolors="none", label=f"{group}, {seed} {s}")
        if _use_log(table[record.x].to_numpy(dtype=np.float64)):
            ax.set_xscale("log")
        if _use_log(y):
            ax.set_yscale("log")
        ax.set_xlabel(names.get(record.x, record.x))
        ax.set_ylabel(names.get(record.y, record.y))
        ax.tick_params(labelbottom=True)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker="o", linestyle="none", color=colors[g]) for g in groups]
    handles += [Line2D([], [], marker=markers[s], linestyle="none", color="0.3")
                for s in seeds]
    legend_labels = [str(g) for g in groups] + [f"{seed} {s}" for s in seeds]
    figure.legend(handles, legend_labels, loc="outside lower center", fontsize="small",
                  ncols=n_legend_columns, title=f"group (colour), {seed} (marker)")
    method = ("no interval" if n_boot == 0 else
              f"{confidence:.0%} interval: bootstrap over groups ({n_boot} resamples, all seeds "
              "of a drawn group together)")
    figure.suptitle(f"{title}\n{method}" if title else method)
    return figure
