"""The ``fairprune`` console script: audit and explain on a small slice of bundled Adult."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fairprune_sk.benchmark.cli import build_parser, main


def test_audit_writes_per_rate_per_group_table(tmp_path, capsys):
    out = tmp_path / "audit.csv"
    main(["audit", "--n-train", "600", "--epochs", "1", "--rates", "0.5", "0.9",
          "--fine-tune-epochs", "0", "--quiet", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "pruning rate 0.9" in printed and "fairness violation xi" in printed
    table = pd.read_csv(out)
    assert sorted(table["rate"].unique()) == [0.5, 0.9]
    assert set(table["race"]) == {"White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo",
                                  "Other"}
    # ξ is the spread of the excess risk across groups, per rate
    for _, part in table.groupby("rate"):
        spread = part["excess_risk"].max() - part["excess_risk"].min()
        assert part["fairness_violation"].iloc[0] == pytest.approx(spread)
    np.testing.assert_allclose(table["sparsity"], table["rate"], atol=0.01)


def test_audit_json_and_intersectional_groups(tmp_path):
    out = tmp_path / "audit.json"
    main(["audit", "--n-train", "400", "--epochs", "1", "--rates", "0.7", "--sensitive", "race",
          "sex", "--fine-tune-epochs", "0", "--quiet", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert {"race", "sex", "excess_risk", "count"} <= set(rows[0])
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


def test_bad_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["audit", "--rates", "1.5"])
    assert "pruning rate must be in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["audit", "--sensitive", "age"])
