"""Figures of a benchmark sweep (matplotlib, Agg, PNG), carrying the paper's two messages.

- :func:`plot_group_accuracy` (Tran et al. 2022, Fig. 1): the *change* in each group's test
  accuracy from the dense net at each pruning rate, one panel per method; the rates are evenly
  spaced categories, and at each rate every group is a point with an error bar for the 95 %
  t-interval over seeds (``n`` = test rows in the legend), the overall change a black diamond.
- :func:`plot_method_comparison` (the paper's Fig. 5): test accuracy against disparity, one point
  per method and pruning rate, error bars for the 95 % t-interval over seeds in both directions;
  first panel ξ (eq. 3), second the largest excess accuracy gap ``max_g ψ_g``, third the
  worst-off group's test accuracy against ``max_g ψ_g`` (levelling down shows there). Methods
  without class probabilities (``threshold``) have no ξ: the first panel names them and the
  others show them.

Every disparity is measured against the common dense net θ* of the seed (the ★), so methods are
comparable. At pruning rate 0, ``none`` and the methods whose constraint acts only after pruning
(``fair_after``, ``ceag``, ``ceag_heldout``) are θ* itself, the ★, so they get no point of their
own; the rate-0 point of any other method is hollow: nothing was pruned, so its disparity is the
method's own change to θ* (constrained training, reweighting, thresholds), not pruning's. In the
group-accuracy figure the ``fair_*`` methods (and ``gridsearch``'s selected net) are drawn
relative to *their own* dense net, so their rate-0 point is 0 and the curve shows what pruning
did to them; ``eg`` (a mixture of nets) is drawn relative to θ* and its panel says so.

The figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas directly, so
importing this module neither needs a display nor changes pyplot's backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..metrics import FRAME_COLUMNS
from .methods import DENSE_AT_RATE_0
from .summary import DEFAULT_CONFIDENCE, seed_interval

__all__ = ["COMPARISON_PANELS", "plot_group_accuracy", "plot_method_comparison",
           "plot_sweep"]

_RUN_KEYS = ("method", "rate", "seed")
_GROUP_REQUIRED = (*_RUN_KEYS, "group", "count", "accuracy_dense", "accuracy_pruned")
_RUN_REQUIRED = (*_RUN_KEYS, "accuracy", "accuracy_dense", "fairness_violation",
                 "max_excess_accuracy_gap")
_OWN_DENSE_METHODS = ("fair_before", "fair_after", "fair_both", "gridsearch")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")


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
                max_columns: int = 3, sharey: bool = False,
                extra_height: float = 1.2) -> tuple[Figure, list]:
    """Panels, plus ``extra_height`` inches for the titles and the legend below."""
    columns = min(n_panels, max_columns)
    rows = math.ceil(n_panels / columns)
    figure = Figure(figsize=(max(width * columns, 7.0), height * rows + 0.8 + extra_height),
                    layout="constrained")
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


def _stats(frame: pd.DataFrame, by: list[str], column: str,
           confidence: float) -> pd.DataFrame:
    """Mean over seeds of ``column`` and its t-interval, per ``by`` (NaN seeds left out)."""
    stats = frame.groupby(by, sort=False)[column].agg(["mean", "std", "count"])
    stats["low"], stats["high"] = seed_interval(stats["mean"], stats["std"], stats["count"],
                                                confidence)
    return stats


def _seeds_note(table: pd.DataFrame, confidence: float) -> str:
    n_seeds = table["seed"].nunique()
    if n_seeds < 2:
        return "1 seed: no interval over seeds"
    note = f"mean over {n_seeds} seeds, {confidence:.0%} t-interval"
    if n_seeds == 2:
        note += " (2 seeds: t = 12.7, very wide; run 3 or more)"
    return note


def _limits(means: Sequence[np.ndarray], lows: Sequence[np.ndarray],
            highs: Sequence[np.ndarray], floor: float,
            feasible: tuple[float, float] = (-np.inf, np.inf)) -> tuple[float, float] | None:
    """Axis limits that show every mean and the intervals up to the means' spread beyond them.

    Intervals wider than that (few seeds) run off the panel instead of squashing the means
    into a line; nothing outside the ``feasible`` range of the quantity is shown.
    """
    values = np.concatenate([np.ravel(m) for m in means]).astype(float)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = float(values.min()), float(values.max())
    span = max(hi - lo, floor)
    bounds = [np.concatenate([np.ravel(b) for b in group]).astype(float)
              for group in (lows, highs)]
    low = np.nanmin(bounds[0], initial=lo) if np.isfinite(bounds[0]).any() else lo
    high = np.nanmax(bounds[1], initial=hi) if np.isfinite(bounds[1]).any() else hi
    low = max(low, lo - span, feasible[0])
    high = min(high, hi + span, feasible[1])
    if high <= low:  # one value and no interval: a window of ``floor`` around it
        low, high = max(lo - floor / 2, feasible[0]), min(hi + floor / 2, feasible[1])
    pad = 0.06 * (high - low)
    return low - pad, high + pad


def _cut(limits: tuple[float, float] | None, lows: Sequence[np.ndarray],
         highs: Sequence[np.ndarray]) -> bool:
    """Whether an interval runs past ``limits`` (see :func:`_limits`)."""
    if limits is None:
        return False
    ends = [np.ravel(b).astype(float) for b in (*lows, *highs)]
    ends = np.concatenate(ends) if ends else np.empty(0)
    ends = ends[np.isfinite(ends)]
    return bool(ends.size) and (ends.min() < limits[0] or ends.max() > limits[1])


#: Added to a figure's heading when :func:`_limits` cut an interval at a panel's edge.
CUT_NOTE = "; wider intervals are cut at the panel's edge"


#: The runs' compression level in the figures, a pruning rate or a width in bits (quantization),
#: and its words. Widths are drawn from many bits to few, so compression grows to the right as
#: rates do.
_LEVEL_WORDS = {
    "rate": {"axis": "pruning rate", "star": "dense θ* (rate 0)", "label": "rate"},
    "bits": {"axis": "weight bits", "star": "dense θ* (float weights)", "label": "bits"},
}


def _by_rate(table: pd.DataFrame, level: str) -> pd.DataFrame:
    """``table`` with its level column under the name ``rate``, the figures' key."""
    if level not in _LEVEL_WORDS:
        raise ValueError(f"level must be one of {list(_LEVEL_WORDS)}, got {level!r}")
    if level == "bits":
        if "bits" not in table.columns:
            raise ValueError("level='bits' needs a 'bits' column (a quantization sweep's "
                             f"results.csv); the table has {sorted(table.columns)}")
        return table.rename(columns={"bits": "rate"})
    return table


# --------------------------------------------------------------------------------------------
# Figure 1: change in group accuracy
# --------------------------------------------------------------------------------------------
def _group_changes(table: pd.DataFrame) -> pd.DataFrame:
    """Per run × group: the change in accuracy (points) from the dense net the method pruned.

    Also one row per run with ``group == None`` for the overall change (count-weighted).
    """
    rows = table[[*_RUN_KEYS, "group", "count", "accuracy_dense", "accuracy_pruned"]].copy()
    reference = rows["accuracy_dense"]
    if "accuracy_own_dense" in table.columns:
        own = table["accuracy_own_dense"]
        reference = own.where(own.notna(), reference)
    rows["change"] = 100.0 * (rows["accuracy_pruned"] - reference)
    weighted = rows.assign(weighted=rows["change"] * rows["count"])
    overall = weighted.groupby(list(_RUN_KEYS), sort=False)[["weighted", "count"]].sum()
    overall = (overall["weighted"] / overall["count"]).rename("change").reset_index()
    overall["group"] = None
    return pd.concat([rows, overall], ignore_index=True)


def _reference_note(method: str, table: pd.DataFrame) -> str:
    part = table[table["method"] == method]
    if method in _OWN_DENSE_METHODS and "accuracy_own_dense" in part.columns \
            and part["accuracy_own_dense"].notna().all():
        return "change from its own dense net"
    fine_tune_pruned_dense = ("ceag", "ceag_heldout", "gap_and_loss", "fair_gradient_norm")
    if method in ("none", "threshold", *fine_tune_pruned_dense):
        return "change from dense θ*"
    return "change from θ* (trains its own nets)"


def plot_group_accuracy(table: pd.DataFrame, path: str | Path, *,
                        methods: Sequence[str] | None = None, title: str | None = None,
                        confidence: float = DEFAULT_CONFIDENCE, level: str = "rate") -> Path:
    """Change in each group's test accuracy from the dense net at each pruning rate.

    The paper's Fig. 1: one panel per method (shared y axis). The pruning rates are
    categories, evenly spaced and labelled with the rate, so that clustered rates (0, 0.95,
    0.97) get as much room as spread ones and nothing is drawn between two rates that were not
    run. At each rate every group is a point (the mean over seeds) with an error bar (the
    t-interval over seeds), the groups side by side in the order of the legend (``n`` = test
    rows of the group, one colour and marker each), the overall change last, as a black
    diamond. Below 0 a group lost accuracy to pruning.

    Parameters
    ----------
    table : pandas.DataFrame
        ``results.csv``: one row per method × rate × seed × group with ``count``,
        ``accuracy_dense``, ``accuracy_pruned`` and (optionally) ``accuracy_own_dense``, the
        dense net the method itself pruned, used where it is defined.
    path : str or Path
        PNG file to write (folders are created).
    methods : sequence of str, optional
        Methods to draw, in this order; all of the table's by default.
    title : str, optional
        Figure title.
    confidence : float, default=0.95
        Coverage of the error bars.
    level : {"rate", "bits"}, default="rate"
        The runs' compression level: the ``rate`` column (pruning), or the ``bits`` column of
        a quantization sweep, drawn from many bits to few.

    Returns
    -------
    Path
        ``path``.
    """
    return _save(_group_accuracy_figure(_by_rate(table, level), methods=methods, title=title,
                                        confidence=confidence, level=level), path)


#: Share of the distance between two rates that one rate's points spread over.
_DODGE_SPAN = 0.8


def _group_accuracy_figure(table: pd.DataFrame, *, methods: Sequence[str] | None,
                           title: str | None, confidence: float,
                           level: str = "rate") -> Figure:
    """The figure of :func:`plot_group_accuracy`."""
    _check_table(table, _GROUP_REQUIRED)
    methods = list(dict.fromkeys(table["method"])) if methods is None else list(methods)
    unknown = [m for m in methods if m not in set(table["method"])]
    if unknown:
        raise ValueError(f"methods {unknown} are not in the table ({sorted(set(table['method']))})")
    sizes = table.groupby("group", sort=False)["count"].mean().sort_values(ascending=False)
    groups = list(sizes.index)
    rates = sorted(set(table["rate"]), reverse=level == "bits")
    position = {rate: float(k) for k, rate in enumerate(rates)}
    changes = _group_changes(table)
    labels = [f"{group} (n={int(round(sizes.loc[group]))})" for group in groups]
    max_columns = 2 if len(methods) == 4 else 3
    columns = min(len(methods), max_columns)
    # room for every group side by side at every rate
    width = max(4.2, 0.11 * (len(groups) + 1) * len(rates) + 1.6)
    n_columns = _legend_columns([*labels, "all"], max(width * columns, 7.0))
    figure, axes = _new_figure(len(methods), width=width, sharey=True, max_columns=max_columns,
                               extra_height=0.22 * math.ceil((len(groups) + 1) / n_columns) + 0.6)
    colors = _colors(len(groups))
    n_items = len(groups) + 1
    step = _DODGE_SPAN / n_items
    drawn: tuple[list, list, list] = ([], [], [])
    for ax, method in zip(axes, methods, strict=True):
        part = changes[changes["method"] == method]
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        for k, (color, group) in enumerate(zip([*colors, "black"], [*groups, None],
                                               strict=True)):
            rows = part[part["group"].isna()] if group is None else part[part["group"] == group]
            if rows.empty:
                continue
            stats = _stats(rows, ["rate"], "change", confidence).sort_index()
            x = np.array([position[rate] for rate in stats.index]) + (k - (n_items - 1) / 2) * step
            if group is None:
                label = f"all (n={_total(table)})"
                style = dict(color="black", marker="D", markersize=4.5, zorder=4)
            else:
                label = f"{group} (n={int(round(sizes.loc[group]))})"
                style = dict(color=color, marker=_MARKERS[k % len(_MARKERS)], markersize=3.5,
                             zorder=3)
            ax.errorbar(x, stats["mean"], yerr=_half_widths(stats), linestyle="none",
                        elinewidth=0.9, capsize=1.5, label=label, **style)
            for store, column in zip(drawn, ("mean", "low", "high"), strict=True):
                store.append(stats[column].to_numpy())
        for boundary in np.arange(len(rates) - 1) + 0.5:
            ax.axvline(boundary, color="0.85", linewidth=0.8)
        ax.set_xticks(range(len(rates)), [f"{rate:g}" for rate in rates])
        ax.set_xlim(-0.5, len(rates) - 0.5)
        ax.set_title(f"{method}\n{_reference_note(method, table)}", fontsize="medium")
        ax.set_xlabel(f"{_LEVEL_WORDS[level]['axis']} (categories)")
        ax.set_ylabel("Δ test accuracy (points)")
        ax.tick_params(labelleft=True)
        ax.grid(alpha=0.3, axis="y")
    limits = _limits(*drawn, floor=1.0, feasible=(-100.0, 100.0))
    if limits is not None:
        axes[0].set_ylim(*limits)
    _legend(figure, axes, "test group")
    heading = ("Change in each group's test accuracy from the dense net (below 0: the group "
               f"lost accuracy)\n{_seeds_note(table, confidence)} (error bars)"
               f"{CUT_NOTE if _cut(limits, drawn[1], drawn[2]) else ''}")
    figure.suptitle(f"{title}\n{heading}" if title else heading)
    return figure


def _total(table: pd.DataFrame) -> int:
    """Test rows of one run (all groups)."""
    first = table.iloc[0]
    one_run = table[(table["method"] == first["method"]) & (table["rate"] == first["rate"])
                    & (table["seed"] == first["seed"])]
    return int(one_run["count"].sum())


# --------------------------------------------------------------------------------------------
# Figure 5: accuracy against disparity
# --------------------------------------------------------------------------------------------
def _runs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run with compare_methods' column names, from results.csv or a run table.

    From results.csv without a ``worst_group_accuracy`` column, it is the lowest of the run's
    group accuracies (``accuracy_pruned``).
    """
    if "group" in table.columns:
        worst = None
        if "worst_group_accuracy" not in table.columns and "accuracy_pruned" in table.columns:
            worst = (table.groupby(list(_RUN_KEYS), sort=False)["accuracy_pruned"].min()
                     .rename("worst_group_accuracy"))
        per_group = [c for c in (*FRAME_COLUMNS, "group", "accuracy_own_dense")
                     if c in table.columns]
        table = table.drop_duplicates(list(_RUN_KEYS)).drop(columns=per_group)
        table = table.rename(columns={c: c.removeprefix("overall_") for c in table.columns})
        if worst is not None:
            table = table.join(worst, on=list(_RUN_KEYS))
    return table.reset_index(drop=True)


def _dense_worst_group_accuracy(table: pd.DataFrame) -> float | None:
    """Mean over seeds of θ*'s lowest group accuracy (points); None without group rows."""
    if not {"group", "accuracy_dense"} <= set(table.columns):
        return None
    per_group = table.groupby(["seed", "group"], sort=False)["accuracy_dense"].mean()
    return float(100.0 * per_group.groupby(level="seed").min().mean())


#: The panels of :func:`plot_method_comparison`: (x column, x label, y column, y label).
COMPARISON_PANELS = (
    ("fairness_violation", "fairness violation ξ = max R(a) − min R(a) (nats)",
     "accuracy", "test accuracy (%)"),
    ("max_excess_accuracy_gap", "max excess accuracy gap max ψ_g (points)",
     "accuracy", "test accuracy (%)"),
    ("max_excess_accuracy_gap", "max excess accuracy gap max ψ_g (points)",
     "worst_group_accuracy", "worst-group test accuracy, min_g acc_g (%)"),
)


def plot_method_comparison(table: pd.DataFrame, path: str | Path, *,
                           title: str | None = None,
                           confidence: float = DEFAULT_CONFIDENCE, level: str = "rate") -> Path:
    """Accuracy against disparity, one point per method and pruning rate (paper Fig. 5).

    Three panels (:data:`COMPARISON_PANELS`): test accuracy against ξ (eq. 3, nats), test
    accuracy against ``max_g ψ_g`` (points of accuracy), and the worst-off group's test
    accuracy ``min_g acc_g`` against ``max_g ψ_g``. The third panel shows levelling down: a
    method that lowers ψ by taking accuracy from the groups that kept theirs moves left *and
    down* there. Error bars are the t-interval over seeds in both directions; points of one
    method are joined in order of the pruning rate, which labels each point. Up and to the
    left is better. The ★ is the dense net θ* every disparity is measured against (in the
    third panel at θ*'s worst-group accuracy, drawn when the table has group rows); it is
    also the rate-0 point of ``none``, ``fair_after``, ``ceag`` and ``ceag_heldout``
    (:data:`~fairprune_sk.benchmark.methods.DENSE_AT_RATE_0`), which are not drawn again.
    Rate-0 points of the other methods are hollow (nothing was pruned; the method's own change
    to θ*). A method without ξ (``threshold``: no class probabilities) is named in the first
    panel and drawn in the others.

    Parameters
    ----------
    table : pandas.DataFrame
        ``results.csv`` (run-level columns ``overall_accuracy``, ``overall_accuracy_dense``,
        ``fairness_violation``, ``max_excess_accuracy_gap``, ``worst_group_accuracy``
        repeated on every group row; without the last, the lowest ``accuracy_pruned`` of the
        run's groups) or :func:`~fairprune_sk.benchmark.runner.compare_methods`' table.
    path : str or Path
        PNG file to write.
    title : str, optional
        Figure title.
    confidence : float, default=0.95
        Coverage of the error bars.
    level : {"rate", "bits"}, default="rate"
        The runs' compression level, which labels and orders each method's points: the
        ``rate`` column, or the ``bits`` column of a quantization sweep (many bits to few;
        the ★ is then θ*'s float weights).

    Returns
    -------
    Path
        ``path``.
    """
    return _save(_method_comparison_figure(_by_rate(table, level), title=title,
                                           confidence=confidence, level=level), path)


def _method_comparison_figure(table: pd.DataFrame, *, title: str | None,
                              confidence: float, level: str = "rate") -> Figure:
    """The figure of :func:`plot_method_comparison`."""
    runs = _runs(table)
    _check_table(runs, (*_RUN_REQUIRED, "worst_group_accuracy"))
    methods = list(dict.fromkeys(runs["method"]))
    runs = runs.assign(**{column: 100.0 * runs[column] for column in
                          ("accuracy", "accuracy_dense", "max_excess_accuracy_gap",
                           "worst_group_accuracy")})
    stars = {"accuracy": float(runs.drop_duplicates("seed")["accuracy_dense"].mean()),
             "worst_group_accuracy": _dense_worst_group_accuracy(table)}
    figure, axes = _new_figure(len(COMPARISON_PANELS), width=5.0, height=4.4,
                               extra_height=0.25 * math.ceil((len(methods) + 2) / 4) + 0.5)
    axes[1].sharey(axes[0])
    colors = _colors(len(methods))
    # y values drawn, per y column: the shared accuracy axis gets one set of limits
    y_drawn: dict[str, tuple[list, list, list]] = {
        column: ([[star]] if star is not None else [], [], [])
        for column, star in stars.items()
    }
    any_hollow = cut = False
    for ax, (column, label, y_column, y_label) in zip(axes, COMPARISON_PANELS, strict=True):
        disparity = _stats(runs, ["method", "rate"], column, confidence)
        y_stats = _stats(runs, ["method", "rate"], y_column, confidence)
        x_drawn: tuple[list, list, list] = ([[0.0]], [], [])
        undefined = []
        for index, (color, method) in enumerate(zip(colors, methods, strict=True)):
            x = disparity.loc[method].sort_index(ascending=level == "rate")
            y = y_stats.loc[method].reindex(x.index)
            shown = x["mean"].notna() & ~((method in DENSE_AT_RATE_0) & (x.index == 0))
            if not shown.any():
                if x["mean"].isna().all():
                    undefined.append(method)
                continue
            x, y = x[shown], y[shown]
            for store, key in zip(x_drawn, ("mean", "low", "high"), strict=True):
                store.append(x[key].to_numpy())
            for store, key in zip(y_drawn[y_column], ("mean", "low", "high"), strict=True):
                store.append(y[key].to_numpy())
            marker = _MARKERS[index % len(_MARKERS)]
            ax.plot(x["mean"], y["mean"], color=color, linewidth=1.0, alpha=0.6)
            ax.errorbar(x["mean"], y["mean"], xerr=_half_widths(x), yerr=_half_widths(y),
                        fmt="none", ecolor=color, elinewidth=0.9, capsize=2, alpha=0.8)
            pruned = x.index > 0
            ax.scatter(x["mean"][pruned], y["mean"][pruned], color=color, marker=marker, s=36,
                       zorder=3, label=method)
            if (~pruned).any():
                any_hollow = True
                ax.scatter(x["mean"][~pruned], y["mean"][~pruned], facecolors="white",
                           edgecolors=color, marker=marker, s=36, zorder=3,
                           label=None if pruned.any() else method)
            for rate, xm, ym in zip(x.index, x["mean"], y["mean"], strict=True):
                ax.annotate(f"{rate:g}", (xm, ym), xytext=(4, 3), textcoords="offset points",
                            fontsize=7, color=color)
        if stars[y_column] is not None:
            ax.scatter([0.0], [stars[y_column]], marker="*", s=160, color="black", zorder=4,
                       label=_LEVEL_WORDS[level]["star"])
        x_limits = _limits(*x_drawn, floor=0.01 if column == "fairness_violation" else 1.0,
                           feasible=(0.0, np.inf))
        if x_limits is not None:
            ax.set_xlim(*x_limits)
        cut = cut or _cut(x_limits, x_drawn[1], x_drawn[2])
        ax.set_xlabel(label)
        ax.set_ylabel(y_label)
        ax.tick_params(labelleft=True)
        ax.grid(alpha=0.3)
        ax.text(0.98, 0.98, "better: up and left", transform=ax.transAxes, ha="right",
                va="top", fontsize="small", color="0.35")
        if undefined:
            ax.text(0.98, 0.02, f"not shown, ξ undefined (no class probabilities): "
                    f"{', '.join(undefined)}\n→ see max ψ_g on the right",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize="small",
                    color="firebrick")
    for y_column, ax in (("accuracy", axes[0]), ("worst_group_accuracy", axes[2])):
        y_limits = _limits(*y_drawn[y_column], floor=1.0, feasible=(0.0, 100.0))
        if y_limits is not None:
            ax.set_ylim(*y_limits)
        cut = cut or _cut(y_limits, y_drawn[y_column][1], y_drawn[y_column][2])
    handles, labels = _unique_handles(axes)
    from matplotlib.lines import Line2D

    if any_hollow:  # explain hollow markers only where some are drawn
        handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="white",
                              markeredgecolor="0.3"))
        labels.append("hollow: rate 0, nothing pruned\n(the method's own change to θ*)")
    figure.legend(handles, labels, loc="outside lower center", fontsize="small",
                  ncols=min(len(labels), 6), title="method")
    words = _LEVEL_WORDS[level]
    heading = (f"Accuracy against disparity, one point per method and {words['axis']} "
               f"(label: {words['label']}); right: the worst-off group's accuracy\nagainst the "
               f"dense θ* of each seed; {_seeds_note(runs, confidence)}{CUT_NOTE if cut else ''}")
    figure.suptitle(f"{title}\n{heading}" if title else heading)
    return figure


def _half_widths(stats: pd.DataFrame) -> np.ndarray | None:
    """Asymmetric error-bar lengths from a t-interval; None when there is none (one seed)."""
    low = (stats["mean"] - stats["low"]).to_numpy()
    high = (stats["high"] - stats["mean"]).to_numpy()
    if np.isnan(low).all():
        return None
    return np.vstack([np.nan_to_num(low), np.nan_to_num(high)])


def _unique_handles(axes: list) -> tuple[list, list]:
    handles, labels = {}, []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    return [handles[label] for label in labels], labels


def _legend(figure: Figure, axes: list, title: str) -> None:
    """One legend for the figure, outside the panels on the right (no data hidden)."""
    handles, labels = _unique_handles(axes)
    if labels:
        figure.legend(handles, labels, loc="outside lower center", fontsize="small",
                      ncols=_legend_columns(labels, figure.get_figwidth()), title=title)


def _legend_columns(labels: Sequence[str], width: float) -> int:
    """As many legend columns (at most 4) as fit the figure's width in inches."""
    longest = max(len(label) for label in labels)
    per_column = 0.075 * longest + 0.7  # small font: about 0.075 in a character, plus the line
    return int(max(1, min(4, len(labels), width // per_column)))


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_sweep(table: pd.DataFrame, out: str | Path, *, title: str | None = None,
               level: str = "rate") -> list[Path]:
    """Both figures of a sweep into the folder ``out``; ``level`` as in
    :func:`plot_group_accuracy` ("bits" for a quantization sweep).

    Returns
    -------
    list of Path
        ``group_accuracy.png`` and ``methods.png``.
    """
    out = Path(out)
    return [
        plot_group_accuracy(table, out / "group_accuracy.png", title=title, level=level),
        plot_method_comparison(table, out / "methods.png", title=title, level=level),
    ]
