"""What the benchmark's figures and summary tables show: the worst-off group beside ξ and ψ,
the third panel of Fig. 5, the categorical rate axis of Fig. 1."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from fairprune_sk.benchmark.figures import (
    COMPARISON_PANELS,
    _by_rate,
    _group_accuracy_figure,
    _method_comparison_figure,
    plot_method_comparison,
    plot_sweep,
)
from fairprune_sk.benchmark.report import print_summary
from fairprune_sk.benchmark.summary import format_summary, summarize
from fairprune_sk.benchmark.sweep import run_sweep, sweep_net_params
from fairprune_sk.datasets import load_dataset

GROUPS = ("a", "b", "c")


def _results(rates=(0.0, 0.95, 0.97), seeds=(0, 1, 2), methods=("none", "ceag")):
    """A results.csv-shaped table without training, three groups, no worst-group column."""
    rng = np.random.default_rng(1)
    rows = []
    for method in methods:
        for rate in rates:
            for seed in seeds:
                dense = {"a": 0.9, "b": 0.7, "c": 0.5 + 0.01 * seed}
                pruned = {g: dense[g] - (0 if rate == 0 else rng.uniform(0, 0.2))
                          for g in GROUPS}
                for group in GROUPS:
                    rows.append({
                        "method": method, "rate": rate, "seed": seed, "group": group,
                        "count": 100, "accuracy_dense": dense[group],
                        "accuracy_pruned": pruned[group], "accuracy_own_dense": dense[group],
                        "overall_accuracy": np.mean(list(pruned.values())),
                        "overall_accuracy_dense": np.mean(list(dense.values())),
                        "fairness_violation": rate * 0.5,
                        "max_excess_accuracy_gap": rate * 0.1 + 0.01 * seed,
                    })
    return pd.DataFrame(rows)


def _points(ax):
    """The points drawn with error bars, by legend label: (x, y) arrays."""
    return {container.get_label(): (np.asarray(container.lines[0].get_xdata()),
                                    np.asarray(container.lines[0].get_ydata()))
            for container in ax.containers}


def _worst_by_run(table):
    """The lowest group accuracy of each run, computed here independently of the package."""
    worst = {}
    for (method, rate, seed), rows in table.groupby(["method", "rate", "seed"]):
        worst[(method, rate, seed)] = min(rows["accuracy_pruned"])
    return worst


def test_method_comparison_has_a_worst_group_panel():
    table = _results()
    figure = _method_comparison_figure(table, title=None, confidence=0.95)
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert len(axes) == 3
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in axes] == [
        (x_label, y_label) for _, x_label, _, y_label in COMPARISON_PANELS]
    assert axes[2].get_ylabel().startswith("worst-group test accuracy")
    # the points of the third panel: mean over seeds of max psi and of the worst group (%)
    worst = _worst_by_run(table)
    (ceag,) = [c for c in axes[2].collections if c.get_label() == "ceag"]
    got = sorted(map(tuple, np.asarray(ceag.get_offsets())))
    expected = sorted(
        (100 * np.mean([r * 0.1 + 0.01 * s for s in (0, 1, 2)]),
         100 * np.mean([worst[("ceag", r, s)] for s in (0, 1, 2)]))
        for r in (0.95, 0.97))
    np.testing.assert_allclose(got, expected)
    star = [c for c in axes[2].collections if c.get_label() == "dense θ* (rate 0)"]
    dense_worst = 100 * np.mean([min(0.9, 0.7, 0.5 + 0.01 * s) for s in (0, 1, 2)])
    np.testing.assert_allclose(star[0].get_offsets(), [[0.0, dense_worst]])


def test_method_comparison_needs_a_worst_group_accuracy():
    runs = _results().drop_duplicates(["method", "rate", "seed"]).drop(
        columns=["group", "count", "accuracy_dense", "accuracy_pruned", "accuracy_own_dense"])
    runs = runs.rename(columns={"overall_accuracy": "accuracy",
                                "overall_accuracy_dense": "accuracy_dense"})
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['worst_group_accuracy'\]"):
        plot_method_comparison(runs, "unused.png")


def test_group_accuracy_rates_are_evenly_spaced_categories():
    table = _results(rates=(0.0, 0.95, 0.97), methods=("none",))
    figure = _group_accuracy_figure(table, methods=None, title=None, confidence=0.95)
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.95", "0.97"]
    np.testing.assert_array_equal(ax.get_xticks(), [0, 1, 2])
    # every group is drawn as points with error bars, none of them as a band
    assert not [c for c in ax.collections if type(c).__name__ == "FillBetweenPolyCollection"]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["a (n=100)", "b (n=100)", "c (n=100)", "all (n=300)"]
    # at rate 0.97 the points sit side by side around category 2, in the legend's order
    points = _points(ax)
    xs = [points[label][0][-1] for label in labels]
    assert all(1.5 < x < 2.5 for x in xs) and xs == sorted(xs) and len(set(xs)) == 4
    # each point is the mean change over seeds (points of accuracy)
    rows = table[(table["rate"] == 0.97) & (table["group"] == "c")]
    assert points["c (n=100)"][1][-1] == pytest.approx(
        100 * (rows["accuracy_pruned"] - rows["accuracy_dense"]).mean())


def test_a_quantization_sweep_is_drawn_against_the_width_from_many_bits_to_few(tmp_path):
    table = _results(rates=(2, 4, 8)).rename(columns={"rate": "bits"})
    figure = _group_accuracy_figure(_by_rate(table, "bits"), methods=["none"], title=None,
                                    confidence=0.95, level="bits")
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "4", "2"]
    assert ax.get_xlabel() == "weight bits (categories)"
    figure = _method_comparison_figure(_by_rate(table, "bits"), title=None, confidence=0.95,
                                       level="bits")
    labels = [t.get_text() for t in figure.axes[1].texts if t.get_text() in ("2", "4", "8")]
    assert sorted(labels) == ["2", "2", "4", "4", "8", "8"]  # each point labelled by its width
    assert "dense θ* (float weights)" in figure.axes[2].get_legend_handles_labels()[1]
    assert [p.name for p in plot_sweep(table, tmp_path, level="bits")] == [
        "group_accuracy.png", "methods.png"]
    with pytest.raises(ValueError, match="level='bits' needs a 'bits' column"):
        plot_sweep(_results(), tmp_path, level="bits")
    with pytest.raises(ValueError, match="level must be one of"):
        plot_sweep(table, tmp_path, level="width")


def test_group_accuracy_is_readable_with_ten_groups():
    table = _results(methods=("none",))
    many = pd.concat([table.assign(group=table["group"] + str(k)) for k in range(4)])
    many = many[many["group"].isin(sorted(set(many["group"]))[:10])]
    figure = _group_accuracy_figure(many, methods=None, title=None, confidence=0.95)
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    xs = sorted(x[1] for x, _ in _points(ax).values())
    assert len(xs) == 11  # 10 groups and the overall change, apart from one another
    assert min(np.diff(xs)) > 0.05 and 0.5 < xs[0] and xs[-1] < 1.5


def test_printed_summary_has_the_worst_group_beside_psi_and_xi(tmp_path):
    # a real sweep: the worst_group_accuracy the user reads is the lowest group accuracy
    data = load_dataset("digits", n_train=200)
    params = sweep_net_params(data, "mlp", max_epochs=2, fine_tune_epochs=1,
                              hidden_units=(8,))
    result = run_sweep(data, model="mlp", methods=("none",), rates=(0.8,), seeds=(0, 1),
                       net_params=params, out=None, progress=False, figures=False)
    worst = _worst_by_run(result.table)
    runs = result.runs.set_index(["method", "rate", "seed"])["worst_group_accuracy"]
    assert {key: runs[key] for key in worst} == pytest.approx(worst)
    summary = summarize(result.runs)
    table = format_summary(summary)
    order = list(table.columns)
    assert order.index("worst_group_accuracy") > order.index("max_excess_accuracy_gap") \
        > order.index("fairness_violation")
    mean = np.mean(list(worst.values()))
    stream = io.StringIO()
    print_summary(summary, stream)
    printed = stream.getvalue()
    header = next(line for line in printed.splitlines() if "worst_group_accuracy" in line
                  and "train_" not in line)
    assert header.split()[:4] == ["accuracy", "fairness_violation", "max_excess_accuracy_gap",
                                  "worst_group_accuracy"]
    assert f"{mean:.4f} [" in printed
