"""``fairprune`` on the user's own files: a table (``--csv``) and outputs computed elsewhere
(``--predictions``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from cli_errors import one_line_error

from fairprune_sk.cli import main
from fairprune_sk.datasets import load_adult

QUICK = ["--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def adult_csv(tmp_path_factory):
    """900 rows of bundled Adult as the user's CSV (string label, string groups)."""
    data = load_adult()
    table = data.X_train.iloc[:900].copy()
    table["income"] = np.where(data.y_train.iloc[:900] == 1, ">50K", "<=50K")
    path = tmp_path_factory.mktemp("user") / "people.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture
def no_training(monkeypatch):
    from fairprune_sk.nets import PrunableNetClassifier

    def no_fit(*args, **kwargs):
        raise AssertionError("a net was trained")

    monkeypatch.setattr(PrunableNetClassifier, "fit", no_fit)


def test_audit_csv_trains_prunes_and_audits_the_users_table(adult_csv, tmp_path, capsys):
    out = tmp_path / "audit.csv"
    main(["audit", "--csv", str(adult_csv), "--target", "income", "--sensitive", "sex",
          "--rates", "0.5", "0.9", "--n-boot", "30", "--out", str(out), *QUICK])
    printed = capsys.readouterr().out
    assert printed.startswith("people.csv: 675 training and 225 test samples")
    assert "stratified by label × group" in printed and "Lost most: " in printed
    table = pd.read_csv(out)
    assert set(table["sex"]) == {"Female", "Male"} and sorted(set(table["rate"])) == [0.5, 0.9]
    assert table.groupby("rate")["count"].sum().tolist() == [225, 225]
    np.testing.assert_allclose(table["sparsity"], table["rate"], atol=0.01)


def test_audit_warns_when_the_dense_net_learnt_nothing(tmp_path, capsys):
    rng = np.random.default_rng(0)  # noise features, 95 % of one label: the net says "no"
    path = tmp_path / "noise.csv"
    pd.DataFrame({"x": rng.normal(size=400), "g": rng.choice(["p", "q"], 400),
                  "y": np.where(rng.random(400) < 0.95, "no", "yes")}).to_csv(path, index=False)
    main(["audit", "--csv", str(path), "--target", "y", "--sensitive", "g", "--epochs", "5",
          "--rates", "0.5", "--n-boot", "10", "--quiet"])
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "fairprune: warning: the dense net predicts 'no' for every test row: it has learnt "
        "nothing to prune; train longer (--epochs) or faster (--lr)"]
    assert "Lost most: " in captured.out  # the audit still runs


def test_table_defaults_train_with_momentum(adult_csv):
    from fairprune_sk.datasets import load_table

    params = load_table(adult_csv, target="income", sensitive="sex").defaults.net_params()
    assert (params["optimizer__momentum"], params["batch_size"]) == (0.9, 128)


def test_audit_csv_with_a_test_file(adult_csv, tmp_path, capsys):
    raw = pd.read_csv(adult_csv)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    raw.iloc[:600].to_csv(train, index=False)
    raw.iloc[600:].to_csv(test, index=False)
    main(["audit", "--csv", str(train), "--test-csv", str(test), "--target", "income",
          "--sensitive", "race", "sex", "--rates", "0.8", "--n-boot", "20", *QUICK])
    printed = capsys.readouterr().out
    assert printed.startswith("train.csv: 600 training and 300 test samples")
    assert "groups by race & sex" in printed.splitlines()[0]


def test_explain_and_benchmark_take_csv(adult_csv, tmp_path, capsys):
    main(["explain", "--csv", str(adult_csv), "--target", "income", "--sensitive", "sex",
          "--max-iter", "3", "--rate", "0.5", *QUICK])
    assert "rank correlation" in capsys.readouterr().out
    out = tmp_path / "bench"
    main(["benchmark", "--csv", str(adult_csv), "--target", "income", "--sensitive", "sex",
          "--rates", "0.5", "--methods", "none", "--fine-tune-epochs", "0", "--epochs", "1",
          "--out", str(out), "--no-figures"])
    table = pd.read_csv(out / "results.csv")
    assert set(table["dataset"]) == {"people.csv"} and set(table["group"]) == {"Female", "Male"}


@pytest.mark.parametrize("command", ["audit", "explain", "benchmark"])
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "incme", "--sensitive", "sex"], "--target names 'incme', not a column of "
                                                      "people.csv (its columns: age, workclass"),
        (["--target", "income", "--sensitive", "sex", "gender"],
         "--sensitive names 'gender', not a column of people.csv"),
        (["--sensitive", "sex"], "--target must name the label column of --csv"),
        (["--target", "income"], "--sensitive must name the group column(s) of --csv"),
        (["--target", "income", "--sensitive", "sex", "--dataset", "adult"],
         "--csv and --dataset name two sources of data; give one"),
        (["--target", "income", "--sensitive", "sex", "--model", "cnn"],
         "--model must be mlp for --csv"),
        (["--target", "income", "--sensitive", "sex", "--data-path", "x"],
         "--data-path applies to a --dataset, not to --csv"),
    ],
)
def test_csv_errors_are_one_line_naming_the_column_before_training(
        command, extra, message, adult_csv, capsys, no_training):
    line = one_line_error(capsys, [command, "--csv", str(adult_csv), *extra])
    assert line.startswith(f"fairprune {command}: error: {message}")


def test_csv_flags_checked_at_parse_time(tmp_path, capsys):
    line = one_line_error(capsys, ["audit", "--csv", str(tmp_path / "none.csv")])
    assert line.endswith("argument --csv: '" + str(tmp_path / "none.csv") + "' does not exist")
    line = one_line_error(capsys, ["audit", "--csv", "table.xlsx"])
    assert line.endswith("argument --csv: must end in .csv or .parquet or .pq; got 'table.xlsx'")
    line = one_line_error(capsys, ["audit", "--test-size", "1"])
    assert "argument --test-size: a fraction must be in (0, 1); got 1" in line
    line = one_line_error(capsys, ["audit", "--test-size", "0.3"])
    assert line == "fairprune audit: error: --test-size applies to --csv only"


# ----------------------------------------------------------------------------- predictions
def _write_predictions(path, n=240, seed=0):
    """Outputs of a dense and a compressed 3-class model; the compressed one is worse on
    group b."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    group = rng.choice(["a", "b"], n, p=[0.7, 0.3])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 2.0
    dense = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    noisy = logits + rng.normal(scale=np.where(group == "b", 2.0, 0.3)[:, None], size=(n, 3))
    compressed = np.exp(noisy) / np.exp(noisy).sum(axis=1, keepdims=True)
    table = pd.DataFrame({"y_true": y, "group": group})
    for k in range(3):
        table[f"proba_dense_{k}"] = dense[:, k]
        table[f"proba_compressed_{k}"] = compressed[:, k]
    table.to_csv(path, index=False)
    return table


def test_audit_predictions_equals_a_brute_force_computation(tmp_path, capsys):
    table = _write_predictions(tmp_path / "outputs.csv")
    out = tmp_path / "audit.json"
    main(["audit", "--predictions", str(tmp_path / "outputs.csv"), "--sensitive", "group",
          "--n-boot", "40", "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed.startswith("outputs.csv: 240 rows, 3 classes, 2 groups by group")
    assert "The compressed model against the dense one:" in printed
    rows = {row["group"]: row for row in json.loads(out.read_text())}
    y = table["y_true"].to_numpy()
    dense = table[[f"proba_dense_{k}" for k in range(3)]].to_numpy()
    small = table[[f"proba_compressed_{k}" for k in range(3)]].to_numpy()
    loss_dense = -np.log(dense[np.arange(len(y)), y])
    loss_small = -np.log(small[np.arange(len(y)), y])
    drop = (dense.argmax(axis=1) == y).astype(float) - (small.argmax(axis=1) == y)
    for name in ("a", "b"):
        member = table["group"].to_numpy() == name
        assert rows[name]["count"] == member.sum()
        assert rows[name]["excess_risk"] == pytest.approx(
            loss_small[member].mean() - loss_dense[member].mean())
        assert rows[name]["excess_accuracy_gap"] == pytest.approx(
            drop[member].mean() - drop.mean())
    assert rows["b"]["excess_risk"] > rows["a"]["excess_risk"]
    assert (tmp_path / "audit_groups.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rates", "0.5"], "--rates does not apply to --predictions"),
        (["--dataset", "digits"], "--dataset does not apply to --predictions"),
        (["--epochs", "3"], "--epochs does not apply to --predictions"),
        ([], "--sensitive must name the group column(s) of --predictions"),
        (["--sensitive", "race"], "--sensitive names 'race', not a column of outputs.csv"),
    ],
)
def test_audit_predictions_errors(argv, message, tmp_path, capsys):
    _write_predictions(tmp_path / "outputs.csv")
    line = one_line_error(capsys, ["audit", "--predictions", str(tmp_path / "outputs.csv"),
                                    *argv])
    assert line.startswith(f"fairprune audit: error: {message}")


def test_audit_predictions_that_are_not_probabilities(tmp_path, capsys):
    table = _write_predictions(tmp_path / "outputs.csv")
    table["proba_compressed_0"] += 0.5  # rows no longer sum to 1
    table.to_csv(tmp_path / "outputs.csv", index=False)
    line = one_line_error(capsys, ["audit", "--predictions", str(tmp_path / "outputs.csv"),
                                    "--sensitive", "group"])
    assert line.startswith(f"fairprune audit: error: --predictions {tmp_path / 'outputs.csv'}: ")


_WITHOUT_TORCH = textwrap.dedent("""
    import sys
    {prelude}
    from fairprune_sk.cli import main
    main(["audit", "--predictions", sys.argv[1], "--sensitive", "group", "--n-boot", "20",
          "--out", sys.argv[2]])
    print("torch imported:", "torch" in sys.modules)
""")
#: The package's own ``__init__`` left out: only the modules the subcommand imports are loaded.
_BARE_PACKAGE = textwrap.dedent("""
    import importlib.util, types
    spec = importlib.util.find_spec("fairprune_sk")
    package = types.ModuleType("fairprune_sk")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["fairprune_sk"] = package
""")


def _run_without_torch(tmp_path, prelude):
    _write_predictions(tmp_path / "outputs.csv")
    script = _WITHOUT_TORCH.format(prelude=textwrap.indent(prelude, ""))
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "outputs.csv"),
                           str(tmp_path / "audit.csv")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "audit.csv").stat().st_size > 0
    return done.stdout


def test_predictions_path_of_the_cli_imports_no_torch(tmp_path):
    assert "torch imported: False" in _run_without_torch(tmp_path, _BARE_PACKAGE)


def test_predictions_audit_imports_no_torch(tmp_path):
    assert "torch imported: False" in _run_without_torch(tmp_path, "")
