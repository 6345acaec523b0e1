"""The benchmark sweep and the ``fairprune benchmark`` command on tiny digits data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from fairprune_sk.benchmark.figures import plot_group_accuracy, plot_sweep
from fairprune_sk.benchmark.methods import SUMMARY_COLUMNS
from fairprune_sk.benchmark.results import RESULT_COLUMNS
from fairprune_sk.benchmark.sweep import (
    SWEEP_FINE_TUNE_EPOCHS,
    SWEEP_NET_DEFAULTS,
    run_sweep,
    sweep_net_params,
)
from fairprune_sk.cli import main
from fairprune_sk.datasets import load_dataset
from fairprune_sk.metrics import FRAME_COLUMNS

PNG = b"\x89PNG\r\n\x1a\n"

RATES = (0.0, 0.7)
METHODS = ("none", "fair_after")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=300)


@pytest.fixture(scope="module")
def params(digits):
    return sweep_net_params(digits, "mlp", max_epochs=2, fine_tune_epochs=1, hidden_units=(16,))


def _sweep(digits, params, out, **kwargs):
    return run_sweep(digits, model="mlp", methods=METHODS, rates=RATES, seeds=(0,),
                     net_params=params, out=out, **kwargs)


@pytest.fixture(scope="module")
def sequential(digits, params, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return out, _sweep(digits, params, out, n_jobs=1, progress=False)


def test_results_csv_schema(sequential):
    out, result = sequential
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == list(RESULT_COLUMNS)
    # one vocabulary: the frame's columns per group, xi named fairness_violation
    assert list(table.columns[7:7 + len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    assert "xi" not in table.columns and "loss_before" not in table.columns
    assert {"fairness_violation", "max_excess_accuracy_gap", "overall_flip_rate",
            "train_fairness_violation", "train_max_excess_accuracy_gap",
            "accuracy_own_dense"} <= set(table.columns)
    n_groups = 10  # digit classes
    assert len(table) == len(METHODS) * len(RATES) * 1 * n_groups
    per_run = table.groupby(["method", "rate", "seed"]).size()
    assert (per_run == n_groups).all()
    assert table[["method", "rate", "seed", "group"]].duplicated().sum() == 0
    assert set(table["dataset"]) == {"digits"} and set(table["model"]) == {"mlp"}
    dense_rows = table[(table["method"] == "none") & (table["rate"] == 0.0)]
    assert (dense_rows["excess_risk"].abs() < 1e-9).all()  # rate 0 of none is theta* itself
    # so is fair_after's (its constraint acts only after pruning): the same rows as none's
    after_rows = table[(table["method"] == "fair_after") & (table["rate"] == 0.0)]
    same = ["group", "loss_pruned", "accuracy_pruned", "excess_risk", "fairness_violation",
            "sparsity"]
    pd.testing.assert_frame_equal(after_rows[same].reset_index(drop=True),
                                  dense_rows[same].reset_index(drop=True))
    assert (table["count"].groupby([table["method"], table["rate"]]).sum() == 540).all()
    assert (dense_rows["accuracy_own_dense"] == dense_rows["accuracy_dense"]).all()
    summary = pd.read_csv(out / "summary.csv")
    for metric in ("accuracy", "fairness_violation", "max_excess_accuracy_gap",
                   "worst_group_accuracy", "train_accuracy", "train_fairness_violation",
                   "train_max_excess_accuracy_gap", "train_worst_group_accuracy"):
        assert {f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"} <= set(summary.columns)
    assert (summary["n_seeds"] == 1).all() and summary["accuracy_ci_low"].isna().all()
    assert len(summary) == len(METHODS) * len(RATES)
    assert list(result.runs.columns) == list(SUMMARY_COLUMNS)


def test_figures_written(sequential):
    out, result = sequential
    for name in ("group_accuracy.png", "methods.png"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 1000
        assert path.read_bytes()[:8] == PNG
        assert path in result.files


def _synthetic_results(seeds=(0, 1, 2)):
    """A results table without training: two groups, three methods, threshold without xi."""
    rng = np.random.default_rng(0)
    rows = []
    for method in ("none", "fair_before", "threshold"):
        for rate in (0.0, 0.5, 0.9):
            for seed in seeds:
                for group, count in (("a", 90), ("b", 10)):
                    drop = 0.0 if (method == "none" and rate == 0) else rate * rng.uniform(
                        0, 0.1 if group == "b" else 0.02)
                    rows.append({
                        "method": method, "rate": rate, "seed": seed, "group": group,
                        "count": count, "accuracy_dense": 0.8, "accuracy_pruned": 0.8 - drop,
                        "accuracy_own_dense": 0.78 if method == "fair_before" else 0.8,
                        "overall_accuracy": 0.8 - rate * 0.01, "overall_accuracy_dense": 0.8,
                        "fairness_violation": np.nan if method == "threshold" else rate * 0.05,
                        "max_excess_accuracy_gap": rate * 0.03 + 0.001 * seed,
                    })
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seeds", [(0, 1, 2), (0,)])
def test_figures_from_a_table(tmp_path, seeds):
    files = plot_sweep(_synthetic_results(seeds), tmp_path, title="synthetic")
    assert [f.name for f in files] == ["group_accuracy.png", "methods.png"]
    assert all(f.read_bytes()[:8] == PNG for f in files)
    with pytest.raises(ValueError, match="lacks the column"):
        plot_group_accuracy(_synthetic_results().drop(columns="count"), tmp_path / "x.png")


def _hollow_and_filled(monkeypatch, table):
    """Per panel of the method comparison, the (hollow, filled) marker counts per colour."""
    from fairprune_sk.benchmark import figures

    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda figure, path: drawn.setdefault("fig", figure))
    figures.plot_method_comparison(table, "unused.png")
    counts = []
    for ax in drawn["fig"].axes:
        hollow = filled = 0
        for collection in ax.collections:
            faces = collection.get_facecolors()
            n = len(collection.get_offsets())
            if len(faces) and (faces[:, :3] == 1).all() and collection.get_edgecolors().size:
                hollow += n
            elif collection.get_label() != "dense θ* (rate 0)" and len(faces):
                filled += n
        counts.append((hollow, filled))
    return counts


def test_figures_say_when_an_interval_is_cut_at_the_panel_edge(monkeypatch):
    # 2 seeds: t = 12.7, intervals far wider than the means' spread, cut by the axis limits
    from fairprune_sk.benchmark import figures

    headings = []
    monkeypatch.setattr(figures, "_save", lambda figure, path: headings.append(
        figure.get_suptitle()))
    for seeds in ((0, 1), (0,)):
        figures.plot_group_accuracy(_synthetic_results(seeds), "unused.png")
        figures.plot_method_comparison(_synthetic_results(seeds), "unused.png")
    assert [figures.CUT_NOTE in heading for heading in headings] == [True, True, False, False]


def test_method_comparison_draws_no_rate_0_point_for_methods_that_are_theta_star(monkeypatch):
    # none / fair_after / ceag at rate 0 are theta* (the star); fair_before's rate 0 is hollow
    table = _synthetic_results((0, 1))
    table = pd.concat([table[table["method"] != "threshold"],
                       table[table["method"] == "none"].assign(method="fair_after"),
                       table[table["method"] == "none"].assign(method="ceag")])
    for hollow, filled in _hollow_and_filled(monkeypatch, table):
        assert hollow == 1  # fair_before's rate 0 only
        assert filled == 4 * 2  # rates 0.5 and 0.9 of the four methods


def _failing_at(target_method, target_rate):
    """``runner.run_method`` that raises for one method and rate."""
    from fairprune_sk.benchmark import runner

    real = runner.run_method

    def run_method(method, *, rate, **kwargs):
        if method == target_method and rate == target_rate:
            raise RuntimeError("boom\nsecond line")
        return real(method, rate=rate, **kwargs)

    return run_method


def test_a_failed_run_keeps_the_finished_runs(sequential, digits, params, tmp_path,
                                              monkeypatch):
    from fairprune_sk.benchmark import runner

    monkeypatch.setattr(runner, "run_method", _failing_at("fair_after", 0.7))
    with pytest.raises(runner.RunsFailed) as info:
        _sweep(digits, params, tmp_path, n_jobs=1, progress=False)
    error = info.value
    assert str(error) == ("1 of 4 runs failed: fair_after rate=0.7 seed=0 (RuntimeError: "
                          f"boom); the 3 finished run(s) are kept in {tmp_path / 'results.csv'}")
    [failure] = error.failures
    assert (failure.method, failure.rate, failure.seed) == ("fair_after", 0.7, 0)
    assert "Traceback" in failure.traceback and "second line" in failure.traceback
    # the finished runs are written, with the same rows as the full sweep's
    table = pd.read_csv(tmp_path / "results.csv")
    full = pd.read_csv(sequential[0] / "results.csv")
    full = full[~((full["method"] == "fair_after") & (full["rate"] == 0.7))]
    columns = [c for c in RESULT_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(table[columns], full[columns].reset_index(drop=True))
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 3
    meta = json.loads((tmp_path / "meta.json").read_text())
    [record] = meta["failed_runs"]
    assert record["error"] == "RuntimeError: boom" and "second line" in record["traceback"]
    assert not (tmp_path / "methods.png").exists()  # no figures of a partial sweep
    assert error.sweep is not None and len(error.sweep.runs) == 3
    assert set(error.files) == {tmp_path / name for name in
                                ("results.csv", "summary.csv", "meta.json")}


def test_a_failed_dense_reference_fails_only_its_seed(digits, params, monkeypatch):
    from fairprune_sk.benchmark import runner

    real = runner.fit_dense_reference

    def fit_dense_reference(*args, seed, **kwargs):
        if seed == 1:
            raise MemoryError()
        return real(*args, seed=seed, **kwargs)

    monkeypatch.setattr(runner, "fit_dense_reference", fit_dense_reference)
    seen = []
    with pytest.raises(runner.RunsFailed, match=r"^2 of 4 runs failed: none rate=0\.5 seed=1 "
                       r"\(dense reference: MemoryError\); none rate=0\.9 seed=1"):
        runner.run_methods(digits.X_train, digits.y_train, digits.groups_train, digits.X_test,
                           digits.y_test, digits.groups_test, methods=("none",), rates=(0.5, 0.9),
                           seeds=(0, 1), net_params=params,
                           progress=lambda result, done, total: seen.append((done, total)))
    assert [total for _, total in seen] == [4, 4] and seen[-1][0] == 4  # failures counted
    # nothing fails: a plain list
    assert len(runner.run_methods(digits.X_train, digits.y_train, digits.groups_train,
                                  digits.X_test, digits.y_test, digits.groups_test,
                                  methods=("none",), rates=(0.5,), seeds=(0,),
                                  net_params=params)) == 1


def test_runs_failed_message_names_three_runs_and_pickles():
    import pickle

    from fairprune_sk.benchmark.runner import RunFailure, RunsFailed

    failures = [RunFailure("ceag", rate, 0, "ValueError: bad") for rate in (0.1, 0.2, 0.3, 0.4)]
    error = RunsFailed(failures, [], 4)
    assert str(error) == ("4 of 4 runs failed: ceag rate=0.1 seed=0 (ValueError: bad); ceag "
                          "rate=0.2 seed=0 (ValueError: bad); ceag rate=0.3 seed=0 (ValueError: "
                          "bad); and 1 more; no run finished")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.failures == failures


def test_parallel_runs_give_the_same_rows(sequential, digits, params, tmp_path):
    _, first = sequential
    parallel = _sweep(digits, params, tmp_path, n_jobs=2, threads=1, progress=False,
                      figures=False)
    columns = [c for c in RESULT_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(first.table[columns], parallel.table[columns],
                                  check_exact=False, rtol=1e-4, atol=1e-5)


def test_cli_benchmark(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["benchmark", "--dataset", "digits", "--n-train", "200", "--rates", "0", "0.5",
                 "--methods", "none", "--epochs", "2", "--fine-tune-epochs", "1",
                 "--hidden", "8", "--out", str(out), "--no-figures"])
    assert code == 0
    text = capsys.readouterr().out
    assert "not demographic" in text and "subsampled" in text
    assert "2/2" in text and "elapsed" in text  # one progress line per run
    assert "95 % t-interval" in text and "one seed: no interval" in text
    assert "max_excess_accuracy_gap" in text and "train_fairness_violation" in text
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 * 10
    assert not (out / "methods.png").exists()


def test_sweep_net_params_take_the_dataset_defaults_and_the_sweep_settings(digits):
    params = sweep_net_params(digits, "cnn", channels=(4,), lr=None, dual_lr=0.5)
    assert params["module"].__name__ == "SmallCNN" and params["module__channels"] == (4,)
    assert params["max_epochs"] == digits.defaults.max_epochs == 20  # the dataset's
    assert params["lr"] == digits.defaults.lr  # None: the default
    assert params["optimizer__momentum"] == SWEEP_NET_DEFAULTS["momentum"] == 0.9  # the sweep's
    assert params["fine_tune_epochs"] == 2 and params["dual_lr"] == 0.5
    assert sweep_net_params(digits, "resnet18", width=4)["module__width"] == 4
    assert sweep_net_params(digits)["module__hidden_units"] == (64, 64)


def test_fashion_mnist_fine_tunes_for_the_budget_the_mitigations_need(digits):
    fashion = dataclasses.replace(digits, name="fashion_mnist")  # the name sets the default
    assert sweep_net_params(fashion)["fine_tune_epochs"] == 4
    assert SWEEP_FINE_TUNE_EPOCHS == {"fashion_mnist": 4}
    assert sweep_net_params(fashion, fine_tune_epochs=1)["fine_tune_epochs"] == 1  # given
    assert sweep_net_params(digits)["fine_tune_epochs"] == SWEEP_NET_DEFAULTS["fine_tune_epochs"]


def test_dask_backend(digits, params, tmp_path):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster), parallel_config(backend="dask"):
        result = run_sweep(digits, model="mlp", methods=("none",), rates=(0.5,), seeds=(0,),
                           net_params=params, n_jobs=-1, out=None, progress=False)
    assert len(result.table) == 10
    assert result.table["sparsity"].iloc[0] == pytest.approx(0.5, abs=0.02)


def test_cli_benchmark_utkface(tmp_path, capsys, utkface_folder):
    folder = utkface_folder
    out = tmp_path / "utk"
    code = main(["benchmark", "--dataset", "utkface", "--data-path", str(folder),
                 "--image-size", "8", "--width", "4", "--epochs", "1", "--fine-tune-epochs", "0",
                 "--batch-size", "16", "--rates", "0", "0.5", "--methods", "none",
                 "--out", str(out), "--no-figures"])
    assert code == 0
    text = capsys.readouterr().out
    assert "utkface: 36 training and 12 test samples, input shape (3, 8, 8), 3 classes" in text
    assert "also the group" in text and "(ResNet18 (width 4)," in text
    table = pd.read_csv(out / "results.csv")
    assert set(table["group"]) == {"White", "Black", "Asian"}
    assert list(table.columns) == list(RESULT_COLUMNS)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_cli_benchmark_utkface_bad_folder(tmp_path, capsys, make):
    folder = tmp_path / "faces"
    if make == "empty":
        folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--dataset", "utkface", "--data-path", str(folder)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("fairprune benchmark: error: --data-path must be a folder")
    assert "[age]_[gender]_[race]_[date&time].jpg" in err


def test_ray_backend(digits, params):
    ray = pytest.importorskip("ray")
    from joblib import parallel_config
    from ray.util.joblib import register_ray

    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        with parallel_config(backend="ray"):
            result = run_sweep(digits, model="mlp", methods=("none",), rates=(0.5,),
                               seeds=(0,), net_params=params, n_jobs=-1, out=None,
                               progress=False)
    finally:
        ray.shutdown()
    assert len(result.table) == 10
    assert result.table["sparsity"].iloc[0] == pytest.approx(0.5, abs=0.02)
