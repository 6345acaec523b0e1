"""Methods side by side (fairprune_sk.benchmark): real fairlearn mitigators around pruned nets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import ExponentiatedGradient, GridSearch
from scipy import stats

from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
from fairprune_sk.benchmark import methods, outputs
from fairprune_sk.benchmark.methods import (
    GROUP_COLUMNS,
    SUMMARY_COLUMNS,
    fit_dense_reference,
    run_method,
)
from fairprune_sk.benchmark.runner import compare_methods
from fairprune_sk.benchmark.summary import (
    flat_summary,
    format_summary,
    seed_interval,
    summarize,
)
from fairprune_sk.constrained import FairConstrainedNet
from fairprune_sk.datasets import load_dataset
from fairprune_sk.metrics import FRAME_COLUMNS
from fairprune_sk.models import MLP

# fairlearn 0.15 under pandas 3 warns about its own Series.at enlargement: not ours to fix here
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:fairlearn.*")

NET = dict(module=MLP, module__hidden_units=(8,), max_epochs=2, lr=0.1, batch_size=64,
           fine_tune_epochs=1, verbose=0)


@pytest.fixture(scope="module")
def adult():
    """400 Adult training rows, 400 test rows, groups by sex."""
    split = load_dataset("adult", sensitive=["sex"], n_train=400)
    n_test = 400
    return dict(X_train=split.X_train, y_train=split.y_train, A_train=split.groups_train,
                X_test=split.X_test[:n_test], y_test=split.y_test[:n_test],
                A_test=split.groups_test.iloc[:n_test].reset_index(drop=True))


@pytest.fixture(scope="module")
def dense(adult):
    return fit_dense_reference(adult["X_train"], adult["y_train"], seed=0, net_params=NET)


def _run(method, adult, dense, rate=0.5, **kwargs):
    return run_method(method, **adult, rate=rate, seed=0, net_params=NET, dense=dense, **kwargs)


def _check_tables(result):
    assert list(GROUP_COLUMNS) == list(FRAME_COLUMNS)  # one vocabulary: the frame's
    for table in (result.by_group_test, result.by_group_train):
        assert list(table.columns) == list(FRAME_COLUMNS)
        assert len(table) == 2  # Female, Male
    assert set(result.summary) == set(SUMMARY_COLUMNS)
    assert result.by_group_test["count"].sum() == 400


def test_exponentiated_gradient_wraps_a_prunable_net(adult, dense):
    result = _run("eg", adult, dense, eg_params={"max_iter": 3})
    eg = result.model
    assert isinstance(eg, ExponentiatedGradient)
    members = [p for p in eg.predictors_ if isinstance(p, PrunableNetClassifier)]
    assert members and all(p.sparsity_ == pytest.approx(0.5, abs=0.02) for p in members)
    _check_tables(result)
    assert np.isfinite(result.summary["fairness_violation"])
    assert np.isfinite(result.summary["accuracy_gap"])
    assert result.summary["sparsity"] == pytest.approx(0.5, abs=0.02)
    # the expected accuracy of the mixture is fairlearn's pmf at the true label
    pmf = eg._pmf_predict(adult["X_test"])
    expected = pmf[np.arange(400), adult["y_test"]].mean()
    assert result.summary["accuracy"] == pytest.approx(expected)


def test_exponentiated_gradient_bounded_group_loss(adult, dense):
    result = _run("eg", adult, dense, eg_params={"max_iter": 2},
                  eg_constraint="bounded_group_loss", eg_upper_bound=0.3)
    assert type(result.model.constraints).__name__ == "BoundedGroupLoss"
    _check_tables(result)
    assert 0.0 <= result.summary["accuracy"] <= 1.0


def test_grid_search_wraps_a_prunable_net(adult, dense):
    result = _run("gridsearch", adult, dense, gridsearch_params={"grid_size": 3})
    assert isinstance(result.model, GridSearch)
    assert len(result.model.predictors_) == 3
    _check_tables(result)
    assert np.isfinite(result.summary["fairness_violation"])


def test_threshold_optimizer_post_processes_the_pruned_net(adult, dense):
    result = _run("threshold", adult, dense, threshold_constraint="equalized_odds")
    optimizer = result.model
    assert isinstance(optimizer, ThresholdOptimizer)
    assert optimizer.prefit and optimizer.predict_method == "predict_proba"
    # the pruned net itself, no float64 wrapper (predict_proba is float64 already)
    assert not hasattr(methods, "Float64Proba") and not hasattr(outputs, "Float64Proba")
    assert type(optimizer.estimator) is PrunableNetClassifier
    assert optimizer.estimator.sparsity_ == pytest.approx(0.5, abs=0.02)
    assert optimizer.estimator.predict_proba(adult["X_test"][:5]).dtype == np.float64
    # no probabilities: loss, R(a), xi and flip rates are NaN; accuracies and psi are real
    assert result.by_group_test["loss_pruned"].isna().all()
    assert result.by_group_test["flip_rate"].isna().all()
    assert np.isnan(result.summary["fairness_violation"])
    assert np.isnan(result.summary["train_fairness_violation"])
    assert np.isfinite(result.summary["accuracy_gap"])
    assert np.isfinite(result.summary["max_excess_accuracy_gap"])
    psi = result.by_group_test["excess_accuracy_gap"]
    counts = result.by_group_test["count"]
    assert np.average(psi, weights=counts) == pytest.approx(0.0, abs=1e-12)
    assert result.summary["max_excess_accuracy_gap"] == pytest.approx(psi.max())
    assert 0.0 < result.summary["accuracy"] <= 1.0
    labels = optimizer.predict(adult["X_test"], sensitive_features=adult["A_test"],
                               random_state=0)
    assert set(np.unique(labels)) <= {0, 1}


def test_dense_reference_is_shared(adult, dense):
    result = _run("none", adult, dense, rate=0.7)
    frame = ExcessRiskFrame(result.model, adult["X_test"], adult["y_test"],
                            sensitive_features=adult["A_test"], reference=dense)
    np.testing.assert_allclose(result.by_group_test["excess_risk"].to_numpy(),
                               frame.by_group["excess_risk"].to_numpy(), rtol=1e-6, atol=1e-9)
    assert result.summary["fairness_violation"] == pytest.approx(frame.fairness_violation,
                                                                 abs=1e-9)
    assert result.summary["max_excess_accuracy_gap"] == pytest.approx(
        frame.max_excess_accuracy_gap, abs=1e-9)
    assert result.summary["flip_rate"] == pytest.approx(frame.overall["flip_rate"])
    pd.testing.assert_series_equal(result.own_dense_accuracy,
                                   result.by_group_test["accuracy_dense"])
    # the pruned net's own dense reference is the same theta*
    own = ExcessRiskFrame(result.model, adult["X_test"], adult["y_test"],
                          sensitive_features=adult["A_test"])
    np.testing.assert_allclose(own.by_group["excess_risk"], frame.by_group["excess_risk"],
                               atol=1e-6)
    # a fair method is measured against the same theta* ("before" columns agree)
    fair = _run("fair_after", adult, dense, rate=0.7)
    assert isinstance(fair.model, FairConstrainedNet)
    columns = ["count", "loss_dense", "accuracy_dense"]
    pd.testing.assert_frame_equal(fair.by_group_test[columns], result.by_group_test[columns])
    # ... while its figures use the dense net it pruned itself
    own = ExcessRiskFrame(fair.model, adult["X_test"], adult["y_test"],
                          sensitive_features=adult["A_test"])
    np.testing.assert_allclose(fair.own_dense_accuracy, own.by_group["accuracy_dense"])


def test_fair_only_params_reach_only_the_fair_nets(adult, dense):
    params = {**NET, "dual_lr": 0.5, "constraint_target": "excess_risk"}
    fair = run_method("fair_after", **adult, rate=0.5, seed=0, net_params=params, dense=dense)
    assert fair.model.constraint_target == "excess_risk" and fair.model.dual_lr == 0.5
    plain = run_method("none", **adult, rate=0.5, seed=0, net_params=params, dense=dense)
    assert not hasattr(plain.model, "dual_lr")


@pytest.mark.parametrize("method", ["ceag", "ceag_heldout"])
def test_ceag_methods_fine_tune_under_the_accuracy_gap_constraint(adult, dense, method):
    # the net_params' target (the paper's group_loss for fair_*) does not reach ceag
    params = {**NET, "constraint_target": "group_loss", "tolerance": 0.01}
    result = run_method(method, **adult, rate=0.5, seed=0, net_params=params, dense=dense)
    _check_tables(result)
    fair = result.model
    assert fair.constraint_target == "accuracy_gap" and fair.constraint_phase == "after"
    assert fair.tolerance == 0.01 and fair.fine_tune_epochs == NET["fine_tune_epochs"]
    assert fair.constraint_split == (0.2 if method == "ceag_heldout" else None)
    assert fair.sparsity_ == pytest.approx(0.5, abs=0.01)
    # fine-tuning after an unconstrained dense phase: θ* is the common dense reference
    np.testing.assert_allclose(fair.dense_reference().predict_proba(adult["X_test"]),
                               dense.predict_proba(adult["X_test"]), atol=1e-6)


@pytest.mark.parametrize("method", ["none", "fair_after", "ceag", "ceag_heldout"])
def test_rate_0_of_none_and_the_after_methods_is_theta_star(adult, dense, method, monkeypatch):
    # nothing pruned, nothing to constrain: the common dense net itself, not a copy, not a
    # FairConstrainedNet whose constraint would have acted on the dense training
    import copy

    def no_deepcopy(*args, **kwargs):
        raise AssertionError("the benchmark deep-copies an estimator")

    monkeypatch.setattr(copy, "deepcopy", no_deepcopy)
    assert method in methods.DENSE_AT_RATE_0
    result = _run(method, adult, dense, rate=0.0)
    _check_tables(result)
    assert result.model is dense
    for table in (result.by_group_test, result.by_group_train):
        assert (table["excess_risk"] == 0).all() and (table["flip_rate"] == 0).all()
        assert (table["accuracy_pruned"] == table["accuracy_dense"]).all()
    for key in ("fairness_violation", "max_excess_accuracy_gap", "flip_rate", "sparsity",
                "train_fairness_violation", "train_max_excess_accuracy_gap"):
        assert result.summary[key] == 0, key
    assert result.summary["accuracy"] == result.summary["accuracy_dense"]
    pd.testing.assert_series_equal(result.own_dense_accuracy,
                                   result.by_group_test["accuracy_dense"])
    # the wall time is theta*'s training, as for none
    assert result.seconds >= float(np.sum(dense.history[:, "dur"]))


def test_rate_0_of_methods_that_change_theta_star_trains_them(adult, dense):
    assert set(methods.DENSE_AT_RATE_0) == {"none", "fair_after", "ceag", "ceag_heldout",
                                            "gap_and_loss", "fair_gradient_norm"}
    result = _run("fair_before", adult, dense, rate=0.0)
    assert isinstance(result.model, FairConstrainedNet) and result.model is not dense
    assert result.model.constraint_phase == "before" and result.model.pruning_rate == 0
    assert result.summary["sparsity"] == 0
    assert len(result.model.history) == NET["max_epochs"]  # its own (constrained) training
    threshold = _run("threshold", adult, dense, rate=0.0)
    assert threshold.model.estimator is dense  # thresholds around theta* itself, no copy


def test_compare_methods_tidy_schema(adult):
    table = compare_methods(**adult, methods=("none", "fair_before", "threshold"), rates=(0.5,),
                            seeds=(0, 1), net_params=NET)
    assert list(table.columns) == list(SUMMARY_COLUMNS)
    assert len(table) == 3 * 1 * 2
    assert table[["method", "rate", "seed"]].duplicated().sum() == 0
    assert list(dict.fromkeys(table["method"])) == ["none", "fair_before", "threshold"]
    summary = summarize(table)
    assert summary.loc[("none", 0.5), ("n_seeds", "")] == 2
    for stat in ("mean", "std", "ci_low", "ci_high"):
        assert ("fairness_violation", stat) in summary.columns
    text = format_summary(summary, ["accuracy", "fairness_violation"])
    assert "[" in text.loc[("none", 0.5), "accuracy"]
    assert text.loc[("threshold", 0.5), "fairness_violation"] == "nan"


def test_seed_interval_is_scipys_t_interval():
    table = pd.DataFrame({
        "method": ["none"] * 3 + ["eg"] * 4 + ["one"],
        "rate": [0.5] * 8,
        "seed": [0, 1, 2, 0, 1, 2, 3, 0],
        "accuracy": [0.80, 0.83, 0.81, 0.70, 0.74, 0.71, 0.69, 0.9],
        "fairness_violation": [0.01, 0.05, 0.02, np.nan, np.nan, np.nan, np.nan, 0.1],
    })
    summary = summarize(table)
    for method, n in (("none", 3), ("eg", 4)):
        values = table.loc[table["method"] == method, "accuracy"].to_numpy()
        low, high = stats.t.interval(0.95, n - 1, loc=values.mean(), scale=stats.sem(values))
        row = summary.loc[(method, 0.5)]
        assert row[("accuracy", "mean")] == pytest.approx(values.mean())
        assert row[("accuracy", "ci_low")] == pytest.approx(low, rel=1e-12)
        assert row[("accuracy", "ci_high")] == pytest.approx(high, rel=1e-12)
        assert row[("n_seeds", "")] == n
    values = table["fairness_violation"].to_numpy()[:3]
    low, high = stats.t.interval(0.90, 2, loc=values.mean(), scale=stats.sem(values))
    assert summarize(table, confidence=0.9).loc[("none", 0.5), ("fairness_violation", "ci_low")] \
        == pytest.approx(low)
    # all-NaN metric and a single seed: NaN intervals, never a crash
    assert summary.loc[("eg", 0.5), ("fairness_violation", "mean")] != \
        summary.loc[("eg", 0.5), ("fairness_violation", "mean")]
    assert np.isnan(summary.loc[("one", 0.5), ("accuracy", "ci_low")])
    assert format_summary(summary, ["accuracy"]).loc[("one", 0.5), "accuracy"] == "0.9000"
    flat = flat_summary(summary)
    assert {"method", "rate", "accuracy_mean", "accuracy_ci_low", "accuracy_ci_high",
            "n_seeds"} <= set(flat.columns)
    low, high = seed_interval([1.0], [0.0], [1])
    assert np.isnan(low[0]) and np.isnan(high[0])
    with pytest.raises(ValueError, match="confidence must be in"):
        seed_interval([1.0], [0.1], [3], confidence=95)


def test_non_binary_labels_with_eg_raise(adult):
    y = np.arange(len(adult["y_train"])) % 3
    with pytest.raises(ValueError, match="needs exactly two classes; y_train has 3"):
        run_method("eg", **{**adult, "y_train": y}, rate=0.5, seed=0, net_params=NET)
    with pytest.raises(ValueError, match="needs exactly two classes"):
        compare_methods(**{**adult, "y_train": y}, methods=("none", "threshold"), rates=(0.5,),
                        seeds=(0,), net_params=NET)


def test_clear_errors(adult):
    with pytest.raises(ValueError, match="method must be one of"):
        run_method("fair", **adult, rate=0.5, seed=0, net_params=NET)
    with pytest.raises(ValueError, match="must not set"):
        run_method("none", **adult, rate=0.5, seed=0, net_params={**NET, "pruning_rate": 0.5})
    with pytest.raises(ValueError, match="needs a 'module'"):
        run_method("none", **adult, rate=0.5, seed=0, net_params={"max_epochs": 1})
    with pytest.raises(ValueError, match="eg_constraint must be one of"):
        run_method("eg", **adult, rate=0.5, seed=0, net_params=NET, eg_constraint="parity")
