"""The paper's Figs. 2-4 as scatter plots: the points drawn, the ρ and interval shown."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fairprune_sk import PrunableNetClassifier
from fairprune_sk.diagnostics import (
    GroupDiagnostics,
    factor_correlations,
    plot_factor_scatter,
    spearman_with_interval,
)
from fairprune_sk.models import MLP

RHO = re.compile(r"Spearman ρ = (-?\d\.\d\d) \[(-?\d\.\d\d), (-?\d\.\d\d)\], (\d+) groups × "
                 r"(\d+) seeds")


def _table(n_groups=6, seeds=(0, 1, 2), method=None):
    rng = np.random.default_rng(3)
    rows = []
    for seed in seeds:
        for g in range(n_groups):
            size = 50 * (g + 1) * rng.uniform(0.8, 1.2)
            rows.append({"group": f"g{g}", "seed": seed, "count": size,
                         "gradient_norm": 10.0 / size + rng.normal(0, 0.01),
                         "accuracy_dense": 0.5 + 0.05 * g + rng.normal(0, 0.03),
                         **({"net": method} if method else {})})
    return pd.DataFrame(rows)


def _drawn(ax):
    """Every point of a panel, in drawing order."""
    return np.concatenate([np.asarray(c.get_offsets()) for c in ax.collections])


def test_the_rho_shown_is_spearman_of_the_points_drawn():
    table = _table()
    figure = plot_factor_scatter(table, [("count", "gradient_norm"),
                                         ("accuracy_dense", "gradient_norm")], n_boot=300)
    assert len(figure.axes) == 2
    for ax in figure.axes:
        points = _drawn(ax)
        assert len(points) == 18  # 6 groups x 3 seeds
        shown = RHO.search(ax.get_title())
        assert shown is not None, ax.get_title()
        rho = stats.spearmanr(points[:, 0], points[:, 1]).statistic
        assert float(shown.group(1)) == pytest.approx(rho, abs=0.005)
        assert (int(shown.group(4)), int(shown.group(5))) == (6, 3)
        low, high = float(shown.group(2)), float(shown.group(3))
        assert low <= round(rho, 2) <= high
    assert figure.axes[0].get_xlabel() == "group size n_a"
    assert figure.axes[0].get_ylabel() == "group gradient norm ‖g_a‖"
    assert "bootstrap over groups" in figure.get_suptitle()


def test_the_interval_resamples_whole_groups():
    table = _table(n_groups=5)
    x, y, groups = table["count"], table["gradient_norm"], table["group"]
    rho, low, high = spearman_with_interval(x, y, groups, n_boot=400, random_state=1)
    # the same resampling written out: draw groups with replacement, keep all their seeds
    names = list(dict.fromkeys(groups))
    draws = np.random.default_rng(1).integers(0, len(names), size=(400, len(names)))
    values = []
    for draw in draws:
        rows = np.concatenate([np.flatnonzero(groups == names[k]) for k in draw])
        if x.iloc[rows].nunique() > 1 and y.iloc[rows].nunique() > 1:
            values.append(stats.spearmanr(x.iloc[rows], y.iloc[rows]).statistic)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert (low, high) == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])))
    table_stats = factor_correlations(table, [("count", "gradient_norm")], n_boot=400,
                                      random_state=1)
    assert table_stats.loc[0, ["rho", "low", "high"]].tolist() == pytest.approx(
        [rho, low, high])
    # a constant axis has no rank correlation
    assert np.isnan(spearman_with_interval(np.ones(6), np.arange(6), list("aabbcc"))[0])


def test_rows_give_one_row_of_panels_per_method():
    table = pd.concat([_table(method="plain"), _table(method="CEAG")], ignore_index=True)
    figure = plot_factor_scatter(table, [("count", "accuracy_dense"),
                                         ("gradient_norm", "accuracy_dense")],
                                 rows="net", n_boot=0, labels={"count": "size"})
    assert len(figure.axes) == 4
    titles = [ax.get_title() for ax in figure.axes]
    assert [t.splitlines()[0] for t in titles] == ["plain", "plain", "CEAG", "CEAG"]
    assert all("Spearman ρ = " in t and "[" not in t for t in titles)  # n_boot=0: no interval
    assert figure.axes[0].get_xlabel() == "size"
    stats_table = factor_correlations(table, [("count", "accuracy_dense")], rows="net",
                                      n_boot=0)
    assert stats_table["row"].tolist() == ["plain", "CEAG"]


def test_from_group_diagnostics_per_seed():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(int)
    A = np.array(["a", "b", "c"])[np.arange(120) % 3]
    frames = {}
    for seed in (0, 1):
        net = PrunableNetClassifier(MLP, module__hidden_units=(8,), max_epochs=3, lr=0.1,
                                    verbose=0, random_state=seed).fit(X, y).prune(0.5)
        frames[seed] = GroupDiagnostics(net, X, y, sensitive_features=A, max_iter=5, tol=0,
                                        random_state=seed)
    figure = plot_factor_scatter(frames, [("boundary_closeness", "hessian_max_eig")],
                                 n_boot=50)
    points = _drawn(figure.axes[0])
    expected = pd.concat([frames[s].by_group for s in (0, 1)])
    np.testing.assert_allclose(
        sorted(map(tuple, points)),
        sorted(zip(expected["boundary_closeness"], expected["hessian_max_eig"], strict=True)))
    assert "3 groups × 2 seeds" in figure.axes[0].get_title()
    # GroupDiagnostics' own figure is unchanged: four panels of bars
    assert len(frames[0].plot().axes) == 4


def test_bad_input_names_the_argument():
    table = _table()
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['size'\]"):
        plot_factor_scatter(table, [("size", "gradient_norm")])
    with pytest.raises(ValueError, match="each of pairs must be an \\(x, y\\) pair"):
        plot_factor_scatter(table, [("count",)])
    with pytest.raises(ValueError, match="'n_boot' parameter of plot_factor_scatter"):
        plot_factor_scatter(table, [("count", "gradient_norm")], n_boot=-1)
    with pytest.raises(TypeError, match="frames must be a DataFrame"):
        factor_correlations([1, 2], [("count", "gradient_norm")])
