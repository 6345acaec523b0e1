"""ExcessRiskFrame's ψ, flip rates, exemplars and bootstrap intervals against brute force."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest

from fairprune_sk import ExcessRiskFrame
from fairprune_sk.metrics import FRAME_COLUMNS, INTERVAL_COLUMNS, excess_accuracy_gap
from fairprune_sk.metrics._bootstrap import bootstrap_group_sums

matplotlib.use("Agg")

LABELS = np.array(["no", "yes", "maybe"])


def _random_proba(rng, n, k):
    p = rng.random((n, k)) ** 3 + 0.01
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture
def outputs():
    rng = np.random.default_rng(7)
    n = 240
    y = rng.choice(LABELS, n)
    groups = rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])
    dense, pruned = _random_proba(rng, n, 3), _random_proba(rng, n, 3)
    return y, groups, dense, pruned


def _frame(outputs, **kwargs):
    y, groups, dense, pruned = outputs
    return ExcessRiskFrame.from_outputs(
        y, dense, pruned, sensitive_features=groups, classes=LABELS, **kwargs
    )


def _brute_columns(y, groups, dense, pruned, rows):
    """One group's (or all rows') columns with Python loops over the rows."""
    loss_d = loss_p = correct_d = correct_p = flips = 0.0
    for i in rows:
        k = list(LABELS).index(y[i])
        loss_d += -np.log(dense[i][k])
        loss_p += -np.log(pruned[i][k])
        pred_d, pred_p = int(np.argmax(dense[i])), int(np.argmax(pruned[i]))
        correct_d += pred_d == k
        correct_p += pred_p == k
        flips += pred_d != pred_p
    m = len(rows)
    return {
        "count": m,
        "excess_risk": (loss_p - loss_d) / m,
        "accuracy_drop": (correct_d - correct_p) / m,
        "flip_rate": flips / m,
    }


def test_psi_flip_rate_and_excess_risk_match_brute_force(outputs):
    y, groups, dense, pruned = outputs
    frame = _frame(outputs)
    overall = _brute_columns(y, groups, dense, pruned, range(len(y)))
    psis = {}
    for g in ["a", "b", "c"]:
        rows = [i for i in range(len(y)) if groups[i] == g]
        expected = _brute_columns(y, groups, dense, pruned, rows)
        row = frame.by_group.loc[g]
        assert row["count"] == expected["count"]
        assert row["excess_risk"] == pytest.approx(expected["excess_risk"], abs=1e-12)
        assert row["flip_rate"] == pytest.approx(expected["flip_rate"], abs=1e-12)
        psis[g] = expected["accuracy_drop"] - overall["accuracy_drop"]
        assert row["excess_accuracy_gap"] == pytest.approx(psis[g], abs=1e-12)
    assert frame.max_excess_accuracy_gap == pytest.approx(max(psis.values()), abs=1e-12)
    assert frame.overall["excess_accuracy_gap"] == 0.0
    assert frame.overall["flip_rate"] == pytest.approx(overall["flip_rate"])
    # the function API agrees with the frame
    psi = excess_accuracy_gap(
        y, LABELS[pruned.argmax(1)], LABELS[dense.argmax(1)], sensitive_features=groups
    )
    pd.testing.assert_series_equal(
        psi, frame.by_group["excess_accuracy_gap"], check_names=False, check_index_type=False
    )
    assert list(frame.by_group.columns) == list(FRAME_COLUMNS)


def test_pruning_identified_exemplars_are_the_flipped_rows(outputs):
    y, groups, dense, pruned = outputs
    table = _frame(outputs).pruning_identified_exemplars()
    flipped = [i for i in range(len(y)) if np.argmax(dense[i]) != np.argmax(pruned[i])]
    assert sorted(table["position"]) == flipped
    assert table["confidence_dense"].is_monotonic_decreasing
    first = table.iloc[0]
    i = int(first["position"])
    assert first["confidence_dense"] == pytest.approx(dense[i].max())
    assert first["pred_dense"] == LABELS[dense[i].argmax()]
    assert first["pred_pruned"] == LABELS[pruned[i].argmax()]
    assert first["y_true"] == y[i]
    assert first["sensitive_feature_0"] == groups[i]
    assert bool(first["dense_correct"]) == (y[i] == LABELS[dense[i].argmax()])


@pytest.mark.parametrize("block_elements", [0, 2**24])  # per-group products / one product
def test_bootstrap_sums_equal_an_explicit_loop_over_the_same_draws(monkeypatch, block_elements):
    monkeypatch.setattr("fairprune_sk.metrics._bootstrap._BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(0)
    n, n_groups, n_boot = 50, 3, 7
    values = rng.random((n, 2))
    codes = rng.integers(0, n_groups, n)
    sums, counts = bootstrap_group_sums(values, codes, n_groups, n_boot, random_state=3)
    # the implementation draws uniformly over the rows sorted by group
    order = np.argsort(codes, kind="stable")
    draws = np.random.default_rng(3).integers(0, n, size=(n_boot, n), dtype=np.int32)
    for b in range(n_boot):
        rows = order[draws[b]]
        for g in range(n_groups):
            picked = rows[codes[rows] == g]
            assert counts[b, g] == len(picked)
            np.testing.assert_allclose(sums[b, g], values[picked].sum(axis=0), atol=1e-12)


def test_intervals_agree_with_an_independent_pandas_bootstrap(outputs):
    y, groups, dense, pruned = outputs
    frame = _frame(outputs, n_boot=3000, ci_quantiles=[0.05, 0.5, 0.95], random_state=0)
    # independent: resample rows of a per-row DataFrame, groupby per resample
    k = np.array([list(LABELS).index(v) for v in y])
    rows = pd.DataFrame({
        "group": groups,
        "excess": -np.log(pruned[np.arange(len(y)), k]) + np.log(dense[np.arange(len(y)), k]),
        "correct_pruned": (pruned.argmax(1) == k).astype(float),
    })
    rng = np.random.default_rng(123)
    risks, accuracies, xis = [], [], []
    for _ in range(3000):
        sample = rows.iloc[rng.integers(0, len(rows), len(rows))]
        by = sample.groupby("group")[["excess", "correct_pruned"]].mean()
        risks.append(by["excess"].reindex(["a", "b", "c"]))
        accuracies.append(by["correct_pruned"].reindex(["a", "b", "c"]))
        xis.append(by["excess"].max() - by["excess"].min())
    risks, accuracies = pd.DataFrame(risks), pd.DataFrame(accuracies)
    low, mid, high = frame.by_group_ci
    for q, got in ((0.05, low), (0.95, high)):
        expected = risks.quantile(q)
        np.testing.assert_allclose(got["excess_risk"].to_numpy(), expected.to_numpy(), atol=0.03)
        expected = accuracies.quantile(q)
        np.testing.assert_allclose(got["accuracy_pruned"].to_numpy(), expected.to_numpy(),
                                   atol=0.03)
    xi_low, _, xi_high = (s["excess_risk"] for s in frame.difference_ci())
    assert xi_low == pytest.approx(np.quantile(xis, 0.05), abs=0.03)
    assert xi_high == pytest.approx(np.quantile(xis, 0.95), abs=0.03)
    # the point estimate sits inside its interval
    assert (low["excess_risk"] <= frame.by_group["excess_risk"]).all()
    assert (frame.by_group["excess_risk"] <= high["excess_risk"]).all()
    assert len(frame.overall_ci) == 3
    assert frame.overall_ci[0]["accuracy_pruned"] <= frame.overall["accuracy_pruned"]


def test_intervals_have_every_column_but_count(outputs):
    frame = _frame(outputs, n_boot=50, random_state=0)
    assert list(INTERVAL_COLUMNS) == [c for c in FRAME_COLUMNS if c != "count"]
    for table in frame.by_group_ci:
        assert list(table.columns) == list(INTERVAL_COLUMNS)
        assert table.index.equals(frame.by_group.index)
    series = [*frame.overall_ci, *frame.group_min_ci(), *frame.group_max_ci(),
              *frame.difference_ci(), *frame.difference_ci("to_overall"), *frame.ratio_ci()]
    for values in series:
        assert list(values.index) == list(INTERVAL_COLUMNS)
    low, high = frame.difference_ci()
    assert low["excess_risk"] <= frame.fairness_violation <= high["excess_risk"]
    with pytest.raises(ValueError, match="'columns' parameter"):
        frame.by_group_with_ci(["count"])
    with pytest.raises(ValueError, match="'column' parameter"):
        frame.separated_pairs("count")


def test_intervals_are_deterministic_under_random_state(outputs):
    a = _frame(outputs, n_boot=200, random_state=5)
    b = _frame(outputs, n_boot=200, random_state=5)
    c = _frame(outputs, n_boot=200, random_state=6)
    for x, y_ in zip(a.by_group_ci, b.by_group_ci, strict=True):
        pd.testing.assert_frame_equal(x, y_)
    assert not a.by_group_ci[0].equals(c.by_group_ci[0])
    assert a.ci_quantiles == (0.025, 0.975)


def test_min_max_difference_ratio_ci_are_quantiles_of_the_reductions(outputs):
    frame = _frame(outputs, n_boot=500, random_state=1)
    low, high = frame.group_max_ci()
    assert low["excess_accuracy_gap"] <= frame.max_excess_accuracy_gap + 0.05
    assert high["excess_accuracy_gap"] >= frame.max_excess_accuracy_gap - 1e-12
    assert (frame.group_min_ci()[0] <= frame.group_max_ci()[1]).all()
    ratio_low, ratio_high = frame.ratio_ci()
    assert 0 <= ratio_low["accuracy_pruned"] <= ratio_high["accuracy_pruned"] <= 1
    to_overall = frame.difference_ci(method="to_overall")
    assert to_overall[0]["excess_risk"] >= 0
    table = frame.by_group_with_ci()
    assert {"excess_risk_ci_low", "excess_risk_ci_high", "excess_accuracy_gap_ci_low",
            "excess_accuracy_gap_ci_high"} <= set(table.columns)
    pairs = frame.separated_pairs("excess_risk")
    for _, pair in pairs.iterrows():
        assert pair["higher_low"] > pair["lower_high"]
    # Bonferroni-adjusted intervals are wider: they separate a subset of the pairs
    strict = frame.separated_pairs("excess_risk", simultaneous=True)
    as_set = lambda t: set(zip(t["higher"], t["lower"], strict=True))  # noqa: E731
    assert as_set(strict) <= as_set(pairs)
    samples = frame._boot_table[..., INTERVAL_COLUMNS.index("excess_risk")]
    tail = 0.05 / (2 * 3)
    for _, pair in strict.iterrows():
        g = list(frame.by_group.index).index(pair["higher"])
        assert pair["higher_low"] == pytest.approx(np.nanquantile(samples[:, g], tail))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_boot": 0}, r"'n_boot' parameter of ExcessRiskFrame.from_outputs must be an int "
                        r"in the range \[1, inf\) or None. Got 0 instead."),
        ({"n_boot": 2.5}, r"'n_boot' parameter .* must be an int .* Got 2.5 instead"),
        ({"n_boot": 10, "ci_quantiles": [0.0, 0.9]},
         r"'ci_quantiles' parameter of ExcessRiskFrame.from_outputs must be quantiles in the "
         r"open interval \(0, 1\). Got \[0.0, 0.9\] instead."),
        ({"n_boot": 10, "ci_quantiles": [0.9, 0.1]},
         r"'ci_quantiles' .* must be strictly increasing. Got \[0.9, 0.1\]"),
        ({"n_boot": 10, "ci_quantiles": []}, r"'ci_quantiles' .* must be a non-empty sequence"),
        ({"n_boot": 10, "ci_quantiles": 0.5}, r"'ci_quantiles' .* must be an array-like or None"),
        ({"ci_quantiles": [0.1, 0.9]}, r"'ci_quantiles' .* needs n_boot"),
        ({"n_boot": 10, "random_state": "seed"}, r"'random_state' parameter .* Got 'seed'"),
    ],
)
def test_bad_bootstrap_arguments_name_themselves(outputs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _frame(outputs, **kwargs)


def test_ci_without_bootstrap_says_how_to_get_it(outputs):
    frame = _frame(outputs)
    with pytest.raises(ValueError, match="n_boot"):
        _ = frame.by_group_ci
    with pytest.raises(ValueError, match="n_boot"):
        frame.difference_ci()


def test_bootstrap_warnings_point_at_the_callers_line():
    rng = np.random.default_rng(2)
    y = rng.choice(LABELS, 30)
    groups = np.array(["big"] * 29 + ["lone"])
    dense, pruned = _random_proba(rng, 30, 3), _random_proba(rng, 30, 3)
    with pytest.warns(UserWarning, match="single row") as record:
        ExcessRiskFrame.from_outputs(y, dense, pruned, sensitive_features=groups,
                                     classes=LABELS, n_boot=20, random_state=0)
    assert {w.filename for w in record} == {__file__}


def test_one_row_group_gets_its_value_and_a_warning():
    rng = np.random.default_rng(2)
    n = 60
    y = rng.choice(LABELS, n)
    groups = np.array(["big"] * (n - 1) + ["lone"])
    dense, pruned = _random_proba(rng, n, 3), _random_proba(rng, n, 3)
    with pytest.warns(UserWarning, match="single row"):
        frame = ExcessRiskFrame.from_outputs(
            y, dense, pruned, sensitive_features=groups, classes=LABELS, n_boot=300,
            random_state=0,
        )
    low, high = frame.by_group_ci
    value = frame.by_group.loc["lone", "excess_risk"]
    assert low.loc["lone", "excess_risk"] == pytest.approx(value)
    assert high.loc["lone", "excess_risk"] == pytest.approx(value)


def test_from_outputs_without_probabilities_keeps_psi(outputs):
    y, groups, dense, pruned = outputs
    k = np.array([list(LABELS).index(v) for v in y])
    correct = (pruned.argmax(1) == k).astype(float)
    frame = ExcessRiskFrame.from_outputs(
        y, dense, None, sensitive_features=groups, classes=LABELS, correct_pruned=correct,
        n_boot=50, random_state=0,
    )
    full = _frame(outputs)
    pd.testing.assert_series_equal(frame.by_group["excess_accuracy_gap"],
                                   full.by_group["excess_accuracy_gap"])
    assert np.isnan(frame.fairness_violation)
    assert frame.by_group["flip_rate"].isna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(frame.by_group_ci[0]["excess_risk"]).all()
    with pytest.raises(ValueError, match="proba_pruned=None"):
        frame.pruning_identified_exemplars()
    with pytest.raises(ValueError, match="correct_pruned"):
        ExcessRiskFrame.from_outputs(y, dense, sensitive_features=groups, classes=LABELS)
    # a randomised model's expected correctness is a float sum: rounding above 1 is accepted
    rounded = ExcessRiskFrame.from_outputs(
        y, dense, None, sensitive_features=groups, classes=LABELS,
        correct_pruned=np.minimum(correct + 1e-12, 1.0 + 1e-12))
    assert rounded.by_group["accuracy_pruned"].max() <= 1.0
    with pytest.raises(ValueError, match=r"correct_pruned must lie in \[0, 1\]"):
        ExcessRiskFrame.from_outputs(y, dense, None, sensitive_features=groups, classes=LABELS,
                                     correct_pruned=correct * 1.5)


def test_plot_draws_one_bar_per_group_with_intervals(outputs):
    frame = _frame(outputs, n_boot=100, random_state=0)
    ax = frame.plot("excess_accuracy_gap")
    assert len(ax.patches) == 3
    assert any("n=" in t.get_text() for t in ax.get_yticklabels())
    with pytest.raises(ValueError, match="'column' parameter of ExcessRiskFrame.plot must be a "
                                         "str among"):
        frame.plot("count")
    with pytest.raises(ValueError, match="'sort' parameter of ExcessRiskFrame.plot must be"):
        frame.plot("excess_risk", sort="nope")
    import matplotlib.pyplot as plt

    plt.close("all")
