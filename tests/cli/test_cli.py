"""The ``fairprune`` console script: audit, explain and benchmark on small data, and the CLI edge
(every user error is one line on stderr and exit status 2, before any training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_errors import one_line_error

from fairprune_sk.audit import audit_pruning
from fairprune_sk.cli import build_parser, main
from fairprune_sk.datasets import load_dataset
from fairprune_sk.models import MLP
from fairprune_sk.nets import PrunableNetClassifier

AUDIT_SMALL = ["audit", "--n-train", "600", "--epochs", "1", "--fine-tune-epochs", "0",
               "--n-boot", "50", "--quiet"]


def test_audit_writes_per_rate_per_group_table_with_intervals(tmp_path, capsys):
    out = tmp_path / "audit.csv"
    main(AUDIT_SMALL + ["--rates", "0.5", "0.9", "--sensitive", "race", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "pruning rate 0.9" in printed and "xi = " in printed
    table = pd.read_csv(out)
    assert sorted(table["rate"].unique()) == [0.5, 0.9]
    assert set(table["race"]) == {"White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo",
                                  "Other"}
    # the schema: frame columns, intervals, per-rate summaries in one vocabulary
    expected = {"rate", "sparsity", "count", "loss_dense", "loss_pruned", "excess_risk",
                "excess_risk_ci_low", "excess_risk_ci_high", "accuracy_dense",
                "accuracy_pruned", "accuracy_drop", "excess_accuracy_gap",
                "excess_accuracy_gap_ci_low", "excess_accuracy_gap_ci_high", "flip_rate",
                "fairness_violation", "fairness_violation_ci_low", "fairness_violation_ci_high",
                "max_excess_accuracy_gap", "max_excess_accuracy_gap_ci_low",
                "max_excess_accuracy_gap_ci_high", "accuracy_gap", "seconds"}
    assert expected <= set(table.columns)
    assert "xi" not in table.columns
    for _, part in table.groupby("rate"):
        # ξ is the spread of the excess risk across groups, ψ's max is the max, per rate
        spread = part["excess_risk"].max() - part["excess_risk"].min()
        assert part["fairness_violation"].iloc[0] == pytest.approx(spread)
        assert part["max_excess_accuracy_gap"].iloc[0] == pytest.approx(
            part["excess_accuracy_gap"].max())
        assert (part["excess_risk_ci_low"] <= part["excess_risk"] + 1e-12).all()
        assert (part["excess_risk"] <= part["excess_risk_ci_high"] + 1e-12).all()
    np.testing.assert_allclose(table["sparsity"], table["rate"], atol=0.01)
    for suffix in ("_groups.png", "_accuracy_change.png"):
        assert (tmp_path / f"audit{suffix}").stat().st_size > 0


def test_audit_default_reports_the_worst_group_and_a_verdict(capsys):
    main(AUDIT_SMALL)  # default groups race x sex, default rates
    printed = capsys.readouterr().out
    assert "At pruning rate 0.98 (the highest audited):" in printed
    assert "Lost most: " in printed and "R(a) = " in printed
    assert any(f"Significant: {word}" in printed for word in ("YES", "WEAK", "NO"))
    assert "What the numbers mean:" in printed
    for name in ("excess_risk", "fairness_violation", "excess_accuracy_gap"):
        assert name in printed


def test_audit_json_and_intersectional_groups(tmp_path):
    out = tmp_path / "audit.json"
    main(AUDIT_SMALL + ["--rates", "0.7", "--sensitive", "race", "sex", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert {"race", "sex", "excess_risk", "count", "excess_risk_ci_low"} <= set(rows[0])
    assert len(rows) == len({(r["race"], r["sex"]) for r in rows})


def test_explain_prints_factors_and_correlations(tmp_path, capsys):
    out = tmp_path / "explain.csv"
    main(["explain", "--n-train", "400", "--epochs", "1", "--max-iter", "5", "--rate", "0.8",
          "--sensitive", "sex", "--quiet", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "rank correlation" in printed
    table = pd.read_csv(out, index_col=0)
    assert {"gradient_norm", "hessian_max_eig", "bound", "excess_risk"} <= set(table.columns)
    assert out.with_suffix(".png").stat().st_size > 0


def test_audit_prunes_with_a_data_driven_criterion_on_the_training_groups(tmp_path):
    # fair_taylor ranks the weights by each training group's Taylor loss increase: the audit
    # passes the groups, so the result differs from ranking one pooled group
    out = tmp_path / "audit.csv"
    main(AUDIT_SMALL + ["--rates", "0.9", "--pruning-method", "fair_taylor", "--out", str(out)])
    cli = pd.read_csv(out)
    data = load_dataset("adult", n_train=600, random_state=0)
    net = PrunableNetClassifier(MLP, module__hidden_units=(16,), max_epochs=1, lr=0.05,
                                random_state=0, verbose=0).fit(data.X_train, data.y_train)
    runs = {name: audit_pruning(net, data.X_train, data.y_train, data.X_test, data.y_test,
                                data.groups_test, [0.9], method="fair_taylor",
                                sensitive_train=groups).table
            for name, groups in (("groups", data.groups_train), ("pooled", None))}
    assert not np.allclose(runs["groups"]["excess_risk"], runs["pooled"]["excess_risk"])
    assert {"rate", "excess_risk"} <= set(cli.columns) and (cli["rate"] == 0.9).all()


def test_reductions_refuse_a_data_driven_pruning_method(capsys):
    line = one_line_error(capsys, ["benchmark", "--n-train", "300", "--methods", "none", "eg",
                                    "--pruning-method", "fair_taylor"])
    assert line.startswith("fairprune benchmark: error: --methods: method='eg' cannot prune "
                           "with pruning_method='fair_taylor'")


def test_explain_a_quantized_net(tmp_path, capsys):
    out = tmp_path / "explain.csv"
    main(["explain", "--n-train", "400", "--epochs", "1", "--max-iter", "5", "--compress",
          "quantize", "--bits", "2", "--sensitive", "sex", "--quiet", "--out", str(out)])
    assert "diagnostics at 2 bits (0 fine-tuning epochs)" in capsys.readouterr().out
    table = pd.read_csv(out, index_col=0)
    # θ̂ is the 2-bit net: its accuracy and R(a) differ from θ*'s
    assert (table["accuracy_pruned"] != table["accuracy_dense"]).any()
    assert table["excess_risk"].abs().max() > 0
    line = one_line_error(capsys, ["explain", "--bits", "3"])
    assert line == ("fairprune explain: error: --bits needs --compress quantize (pruning "
                    "takes --rate)")
    line = one_line_error(capsys, ["explain", "--compress", "quantize", "--rate", "0.5"])
    assert line.startswith("fairprune explain: error: --rate does not apply to --compress quantize")


def test_bad_arguments_are_rejected(capsys):
    line = one_line_error(capsys, ["audit", "--rates", "1.5"])
    assert line == ("fairprune audit: error: argument --rates: a pruning rate must be in [0, 1); "
                    "got 1.5")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "--n-train", "-5"], "--n-train: must be an integer >= 2; got -5"),
        (["audit", "--threads", "0"], "--threads: must be an integer >= 1; got 0"),
        (["audit", "--n-boot", "0"], "--n-boot: must be an integer >= 1; got 0"),
        (["audit", "--out", "x.txt"], "--out: must end in .csv or .json"),
        (["audit", "--lr", "-1"], "--lr: must be a finite number > 0"),
        (["audit", "--lr", "inf"], "--lr: must be a finite number > 0; got inf"),
        (["audit", "--momentum", "-1"], "--momentum: a momentum must be in [0, 1); got -1"),
        (["audit", "--momentum", "nan"], "--momentum: a momentum must be in [0, 1); got nan"),
        (["audit", "--momentum", "1"], "--momentum: a momentum must be in [0, 1); got 1"),
        (["audit", "--width", "0"], "--width: must be an integer >= 1; got 0"),
        (["audit", "--channels", "8", "0"], "--channels: must be an integer >= 1; got 0"),
        (["audit", "--image-size", "4"], "--image-size: must be an integer >= 8; got 4"),
        (["audit", "--seed", "-1"], "--seed: must be an integer >= 0; got -1"),
        (["audit", "--data-seed", "-1"], "--data-seed: must be an integer >= 0; got -1"),
        (["audit", "--epochs", "0"], "--epochs: must be an integer >= 1; got 0"),
        (["audit", "--fine-tune-epochs", "-1"], "--fine-tune-epochs: must be an integer >= 0"),
        (["audit", "--batch-size", "0"], "--batch-size: must be an integer >= 1; got 0"),
        (["audit", "--rates", "0.5", "0.9", "0.5"], "--rates: 0.5 given twice"),
        (["audit", "--rates", "0.5", "0.50"], "--rates: 0.5 given twice"),
        (["audit", "--sensitive", "race", "race"], "--sensitive: race given twice"),
        (["audit", "--minority-fraction", "0"], "--minority-fraction: a fraction must be in"),
        (["audit", "--dataset", "mnist"], "--dataset: invalid choice: 'mnist'"),
    ],
)
def test_audit_user_errors_are_one_line_at_parse_time(argv, message, capsys):
    line = one_line_error(capsys, argv)
    assert line.startswith("fairprune audit: error: argument ") and message in line


def test_audit_out_under_a_regular_file_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_line_error(capsys, ["audit", "--out", str(blocker / "audit.csv")])
    assert line.startswith("fairprune audit: error: argument --out: cannot create the folder")
    assert "is a file" in line


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command, out", [("audit", "/proc/audit.csv"),
                                          ("explain", "/proc/explain.csv"),
                                          ("benchmark", "/proc/results")])
def test_out_that_cannot_be_created_fails_at_parse_time(command, out, capsys):
    # /proc is a folder that os.access calls writable for root, yet no file can be made there
    line = one_line_error(capsys, [command, "--out", out])
    assert line.startswith(f"fairprune {command}: error: argument --out: cannot write '{out}'")


def test_out_is_proven_writable_and_left_as_it_was(tmp_path):
    new = tmp_path / "new" / "deeper" / "audit.csv"
    assert build_parser().parse_args(["audit", "--out", str(new)]).out == new
    assert not (tmp_path / "new").exists()  # the probe's file and folders are removed
    existing = tmp_path / "kept.csv"
    existing.write_text("old results")
    build_parser().parse_args(["audit", "--out", str(existing)])
    assert existing.read_text() == "old results"  # proven writable without truncating it
    folder = tmp_path / "bench"
    assert build_parser().parse_args(["benchmark", "--out", str(folder)]).out == folder
    assert not folder.exists()


def test_audit_utkface_the_papers_setting(tmp_path, capsys, utkface_folder):
    folder = utkface_folder
    out = tmp_path / "utk.csv"
    main(["audit", "--dataset", "utkface", "--data-path", str(folder), "--image-size", "8",
          "--width", "4", "--epochs", "1", "--batch-size", "16", "--rates", "0.5",
          "--n-boot", "20", "--quiet", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "input shape (3, 8, 8)" in printed and "training the dense ResNet18" in printed
    assert "Lost most: " in printed
    table = pd.read_csv(out)
    assert set(table["race"]) == {"White", "Black", "Asian"}


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_audit_utkface_bad_folder_is_one_line(tmp_path, capsys, make):
    folder = tmp_path / "faces"
    if make == "empty":
        folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "--dataset", "utkface", "--data-path", str(folder)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("fairprune audit: error: --data-path must be a folder")


# --- explain and benchmark: every argument checked at parse time ---------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "--rate", "1.5"], "--rate: a pruning rate must be in (0, 1); got 1.5"),
        (["explain", "--rate", "0"], "--rate: a pruning rate must be in (0, 1); got 0"),
        (["explain", "--bits", "9"], "--bits: a bit width must be an integer in [2, 8]; got 9"),
        (["explain", "--epochs", "0"], "--epochs: must be an integer >= 1; got 0"),
        (["explain", "--max-iter", "-1"], "--max-iter: must be an integer >= 1; got -1"),
        (["explain", "--n-train", "1"], "--n-train: must be an integer >= 2; got 1"),
        (["explain", "--lr", "0"], "--lr: must be a finite number > 0"),
        (["explain", "--out", "x.json"], "--out: must end in .csv"),
        (["explain", "--threads", "0"], "--threads: must be an integer >= 1; got 0"),
        (["benchmark", "--seeds", "0"], "--seeds: must be an integer >= 1; got 0"),
        (["benchmark", "--rates", "1"], "--rates: a pruning rate must be in [0, 1); got 1"),
        (["benchmark", "--n-jobs", "0"], "--n-jobs: must be an integer >= 1, or -1"),
        (["benchmark", "--momentum", "1.5"], "--momentum: a momentum must be in [0, 1)"),
        (["benchmark", "--minority-fraction", "0"], "--minority-fraction: a fraction must be in"),
        (["benchmark", "--dual-lr", "-1"], "--dual-lr: must be a finite number >= 0"),
        (["benchmark", "--epochs", "x"], "--epochs: expected an integer, got 'x'"),
        (["benchmark", "--hidden", "64", "0"], "--hidden: must be an integer >= 1; got 0"),
        (["benchmark", "--image-size", "4"], "--image-size: must be an integer >= 8; got 4"),
        (["benchmark", "--threads", "0"], "--threads: must be an integer >= 1; got 0"),
        (["benchmark", "--device", "nonsense"], "--device: not a torch device"),
        (["benchmark", "--rates", "0", "0.5", "0"], "--rates: 0 given twice"),
        (["benchmark", "--methods", "none", "ceag", "none"], "--methods: none given twice"),
        (["benchmark", "--methods", "magic"], "--methods: invalid choice: 'magic'"),
        (["benchmark", "--tolerance", "nan"], "--tolerance: must be a finite number >= 0"),
        (["benchmark", "--dual-update", "0"], "--dual-update must be 'auto', 'epoch' or an int"),
        (["benchmark", "--eg-max-iter", "0"], "--eg-max-iter: must be an integer >= 1; got 0"),
        (["benchmark", "--grid-size", "0"], "--grid-size: must be an integer >= 1; got 0"),
        (["benchmark", "--seed-start", "-1"], "--seed-start: must be an integer >= 0; got -1"),
        (["explain", "--momentum", "-0.5"], "--momentum: a momentum must be in [0, 1)"),
        (["explain", "--image-size", "2"], "--image-size: must be an integer >= 8; got 2"),
    ],
)
def test_explain_and_benchmark_user_errors_at_parse_time(argv, message, capsys):
    line = one_line_error(capsys, argv)
    assert line.startswith(f"fairprune {argv[0]}: error: argument ") and message in line


def test_benchmark_out_must_be_a_writable_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, message in ((blocker, "is a file; give a folder"),
                         (blocker / "results", "is a file")):
        line = one_line_error(capsys, ["benchmark", "--out", str(out)])
        assert line.startswith("fairprune benchmark: error: argument --out: ")
        assert message in line
    missing = tmp_path / "new" / "results"  # made later, when the results are written
    assert build_parser().parse_args(["benchmark", "--out", str(missing)]).out == missing


@pytest.fixture
def no_loading(monkeypatch):
    """Every reader of a dataset's files fails the test: the options must fail first."""
    from fairprune_sk.datasets import _adult, _fashion_mnist, _utkface

    def no_load(*args, **kwargs):
        raise AssertionError("data were loaded")

    for module, name in ((_adult, "load_adult"), (_fashion_mnist, "load_fashion_mnist"),
                         (_utkface, "load_utkface")):
        monkeypatch.setattr(module, name, no_load)
    monkeypatch.setattr("sklearn.datasets.load_digits", no_load)


@pytest.mark.parametrize("command", ["audit", "explain", "benchmark"])
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "cnn"], "--model must be mlp for the adult dataset"),
        (["--dataset", "utkface"], "--data-path must be a folder holding UTKFace face images"),
        (["--target", "gender"], "--target applies to the utkface dataset only"),
        (["--minority-fraction", "0.1"], "--minority-fraction applies to the fashion_mnist "
                                         "dataset only"),
        (["--dataset", "fashion_mnist", "--minority-classes", "Shirt"],
         "--minority-fraction must be given with --minority-classes"),
        (["--dataset", "digits", "--image-size", "16"], "--image-size applies to the utkface "
                                                        "dataset only"),
        (["--sensitive", "gender"], "--sensitive must be among race, sex for the adult "
                                    "dataset; got gender"),
        (["--dataset", "digits", "--sensitive", "race"], "--sensitive must be among class for "
                                                         "the digits dataset"),
        (["--dataset", "utkface", "--data-path", "x", "--target", "age"],
         "--target must be among race, gender, age_bin"),
    ],
)
def test_data_options_fail_in_one_line_before_loading(command, argv, message, capsys,
                                                      no_loading):
    line = one_line_error(capsys, [command, *argv])
    assert line.startswith(f"fairprune {command}: error: {message}")


def test_every_subcommand_takes_the_same_data_options():
    from fairprune_sk.datasets import DATASETS

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    options = {}
    for name, sub in commands.items():
        parser.parse_args([name])  # a subcommand's options are added when it is chosen
        [group] = [g for g in sub._action_groups if g.title == "data"]
        options[name] = {(a.dest, tuple(a.choices or ())) for a in group._group_actions}
    assert options["audit"] == options["explain"] == options["benchmark"]
    assert ("dataset", tuple(sorted(DATASETS))) in options["explain"]
    for name in ("audit", "explain", "benchmark"):
        assert "pruning_method" in {a.dest for a in commands[name]._actions}


def test_explain_takes_the_other_datasets(capsys):
    main(["explain", "--dataset", "digits", "--n-train", "200", "--epochs", "1", "--max-iter",
          "3", "--rate", "0.5", "--quiet"])
    printed = capsys.readouterr().out
    assert printed.startswith("digits: 200 training and 540 test samples")
    assert "rank correlation" in printed and "on 200 digits rows" in printed


@pytest.mark.parametrize("method", ["threshold", "eg", "gridsearch"])
def test_benchmark_method_that_cannot_run_on_the_data_fails_before_training(
        method, capsys, tmp_path, monkeypatch):
    from fairprune_sk.nets import PrunableNetClassifier

    def no_fit(*args, **kwargs):
        raise AssertionError("a net was trained")

    monkeypatch.setattr(PrunableNetClassifier, "fit", no_fit)
    line = one_line_error(capsys, ["benchmark", "--dataset", "digits", "--methods", "none",
                                    method, "--out", str(tmp_path / "bench")])
    assert line.startswith(f"fairprune benchmark: error: --methods: method {method!r} wraps a "
                           "fairlearn binary-classification mitigator and needs exactly two "
                           "classes; y_train has 10")


def test_one_threads_policy_for_every_subcommand():
    from fairprune_sk.cli._types import DEFAULT_THREADS

    parser = build_parser()
    assert DEFAULT_THREADS == 1
    for command in ("audit", "explain", "benchmark"):
        assert parser.parse_args([command]).threads == DEFAULT_THREADS
        assert parser.parse_args([command, "--threads", "3"]).threads == 3


def _fail(*args, **kwargs):
    raise RuntimeError("no display")


def test_benchmark_writes_results_when_plotting_fails(tmp_path, capsys, monkeypatch):
    import torch

    from fairprune_sk.benchmark import figures

    monkeypatch.setattr(figures, "plot_sweep", _fail)
    threads = torch.get_num_threads()
    out = tmp_path / "bench"
    main(["benchmark", "--dataset", "digits", "--n-train", "200", "--epochs", "1",
          "--fine-tune-epochs", "0", "--rates", "0.5", "--methods", "none", "--out", str(out)])
    assert torch.get_num_threads() == threads  # main() restores the caller's setting
    captured = capsys.readouterr()
    assert "could not draw the figures (RuntimeError: no display)" in captured.err
    assert "Traceback" not in captured.err
    assert (out / "results.csv").stat().st_size > 0 and (out / "meta.json").exists()
    assert "..." not in captured.out.split("test data:")[1]  # the summary is never truncated


@pytest.mark.parametrize("failing_rates", [(0.5,), (0.0, 0.5)], ids=["one", "all"])
def test_benchmark_failed_runs_exit_1_in_one_line_keeping_the_others(tmp_path, capsys,
                                                                     monkeypatch, failing_rates):
    from fairprune_sk.benchmark import runner

    real = runner.run_method

    def run_method(method, *, rate, **kwargs):
        if rate in failing_rates:
            raise ValueError(f"no luck at {rate:g}\nmore detail")
        return real(method, rate=rate, **kwargs)

    monkeypatch.setattr(runner, "run_method", run_method)
    out = tmp_path / "bench"
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--dataset", "digits", "--n-train", "200", "--epochs", "1",
              "--fine-tune-epochs", "0", "--rates", "0", "0.5", "--methods", "none",
              "--out", str(out)])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert "Traceback" not in captured.err
    if len(failing_rates) == 1:  # the finished run is written, summarised, no figures
        assert line == ("fairprune benchmark: error: 1 of 2 runs failed: none rate=0.5 seed=0 "
                        "(ValueError: no luck at 0.5); the 1 finished run(s) are kept in "
                        f"{out / 'results.csv'} (tracebacks: failed_runs in meta.json)")
        assert set(pd.read_csv(out / "results.csv")["rate"]) == {0.0}
        assert "more detail" in json.loads((out / "meta.json").read_text())[
            "failed_runs"][0]["traceback"]
        assert "test data:" in captured.out
        assert not (out / "methods.png").exists()
    else:  # nothing finished: nothing written
        assert line == ("fairprune benchmark: error: 2 of 2 runs failed: none rate=0 seed=0 "
                        "(ValueError: no luck at 0); none rate=0.5 seed=0 (ValueError: no luck "
                        "at 0.5); no run finished")
        assert not (out / "results.csv").exists()


@pytest.mark.filterwarnings("ignore:the top Hessian eigenvalue")
def test_explain_writes_the_table_when_plotting_fails(tmp_path, capsys, monkeypatch):
    from fairprune_sk.diagnostics import GroupDiagnostics

    monkeypatch.setattr(GroupDiagnostics, "plot", _fail)
    out = tmp_path / "explain.csv"
    main(["explain", "--n-train", "300", "--epochs", "1", "--max-iter", "3", "--quiet",
          "--out", str(out)])
    assert "could not draw the figure (RuntimeError: no display)" in capsys.readouterr().err
    assert out.stat().st_size > 0 and not out.with_suffix(".png").exists()


# --- terminal and logs ---------------------------------------------------------------------


def test_nets_are_quiet_by_default_and_print_no_ansi_codes_to_a_file(tabular, capsys):
    from fairprune_sk import FairConstrainedNet, PrunableNetClassifier
    from fairprune_sk.models import MLP

    X, y, group = tabular
    assert PrunableNetClassifier(MLP).verbose == 0 and FairConstrainedNet(MLP).verbose == 0
    PrunableNetClassifier(MLP, max_epochs=2, random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""
    PrunableNetClassifier(MLP, max_epochs=3, random_state=0, verbose=1).fit(X, y)
    FairConstrainedNet(MLP, max_epochs=2, random_state=0, verbose=1).fit(
        X, y, sensitive_features=group)
    printed = capsys.readouterr().out  # captured: stdout is not a terminal
    assert "train_loss" in printed and "\x1b[" not in printed


def test_print_log_colours_only_a_terminal(monkeypatch):
    import io

    from fairprune_sk.nets import TerminalPrintLog

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    row = {"train_loss": 0.5, "train_loss_best": True}
    log = TerminalPrintLog().initialize()
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr("sys.stdout", Terminal())
    assert "\x1b[" in log.format_row(row, "train_loss", color="\x1b[31m")
    monkeypatch.setenv("NO_COLOR", "1")
    assert log.format_row(row, "train_loss", color="\x1b[31m") == "0.5000"
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert log.format_row(row, "train_loss", color="\x1b[31m") == "0.5000"
