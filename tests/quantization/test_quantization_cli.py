"""``fairprune audit`` / ``fairprune benchmark`` with ``--compress quantize --bits``: the table
and figures in bits, on a bundled dataset and on the user's CSV, and the one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_errors import one_line_error

from fairprune_sk.cli import main
from fairprune_sk.datasets import load_adult

QUICK = ["--epochs", "2", "--quiet", "--n-boot", "30"]


def test_audit_quantizes_at_each_width_and_labels_bits(tmp_path, capsys):
    out = tmp_path / "audit.csv"
    main(["audit", "--dataset", "digits", "--compress", "quantize", "--bits", "8", "2",
          "--out", str(out), *QUICK])
    printed = capsys.readouterr().out
    assert "quantizing to 8, 2 bits" in printed
    assert "\n8 bits (sparsity" in printed and "\n2 bits (sparsity" in printed
    assert "At 2 bits (the fewest audited):" in printed and "pruning rate" not in printed
    table = pd.read_csv(out)
    assert "rate" not in table.columns and sorted(table["bits"].unique()) == [2, 8]
    for _, part in table.groupby("bits"):
        spread = part["excess_risk"].max() - part["excess_risk"].min()
        assert part["fairness_violation"].iloc[0] == pytest.approx(spread)
    xi = table.groupby("bits")["fairness_violation"].first()
    assert xi[2] > xi[8]  # 2 bits moves the weights far more than 8
    for suffix in ("_groups.png", "_accuracy_change.png"):
        assert (tmp_path / f"audit{suffix}").stat().st_size > 0


def test_audit_quantizes_the_users_csv(tmp_path, capsys):
    data = load_adult()
    frame = data.X_train.iloc[:600].copy()
    frame["income"] = np.where(data.y_train.iloc[:600] == 1, ">50K", "<=50K")
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "audit.json"
    main(["audit", "--csv", str(path), "--target", "income", "--sensitive", "sex",
          "--compress", "quantize", "--bits", "3", "--out", str(out), *QUICK])
    rows = json.loads(out.read_text())
    assert {row["bits"] for row in rows} == {3} and {row["sex"] for row in rows} == {
        "Male", "Female"}


def test_benchmark_quantizes_and_writes_bits(tmp_path, capsys):
    main(["benchmark", "--dataset", "digits", "--compress", "quantize", "--bits", "4", "2",
          "--methods", "none", "ceag", "--epochs", "2", "--fine-tune-epochs", "1",
          "--out", str(tmp_path)])
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(zip(summary["method"], summary["bits"], strict=True)) == {
        ("none", 4), ("none", 2), ("ceag", 4), ("ceag", 2)}
    results = pd.read_csv(tmp_path / "results.csv")
    assert "rate" not in results.columns and set(results["bits"]) == {2, 4}
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["compress"] == "quantize" and meta["bits"] == [4, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "--bits", "4"], "fairprune audit: error: --bits needs --compress quantize"),
        (["audit", "--compress", "quantize", "--rates", "0.5"],
         "fairprune audit: error: --rates does not apply to --compress quantize"),
        (["audit", "--compress", "quantize", "--bits", "9"],
         "fairprune audit: error: argument --bits: a bit width must be an integer in [2, 8]; "
         "got 9"),
        (["audit", "--compress", "quantize", "--bits", "4", "4"],
         "fairprune audit: error: argument --bits: 4 given twice"),
        (["audit", "--compress", "zip"], "fairprune audit: error: argument --compress: invalid"),
        (["benchmark", "--bits", "2"],
         "fairprune benchmark: error: --bits needs --compress quantize"),
        (["benchmark", "--compress", "quantize", "--methods", "eg"],
         "fairprune benchmark: error: --methods: method 'eg' changes the dense net"),
    ],
)
def test_compression_flags_fail_in_one_line_before_training(argv, message, capsys):
    assert one_line_error(capsys, argv).startswith(message)
