"""benchmarks/paper_figures.py on tiny digits data: the figures and the ρ it reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "paper_figures.py"


def test_paper_figures_script_writes_the_figures_and_their_rho(tmp_path):
    command = [sys.executable, str(SCRIPT), "--dataset", "digits", "--seeds", "0",
               "--n-diag", "200", "--max-iter", "3", "--fine-tune-epochs", "1",
               "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for name in ("fig2_gradient_norm.png", "fig3_hessian.png", "fig4_mitigations.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    factors = pd.read_csv(tmp_path / "factors.csv")
    assert factors["net"].nunique() == 5 and factors.groupby("net").size().eq(10).all()
    correlations = pd.read_csv(tmp_path / "correlations.csv")
    fig3 = correlations[(correlations["figure"] == "fig3_hessian.png")
                        & (correlations["x"] == "boundary_closeness")].iloc[0]
    pruned = factors[factors["net"] == "pruned, no fine-tuning"]
    assert fig3["rho"] == pytest.approx(stats.spearmanr(
        pruned["boundary_closeness"], pruned["hessian_max_eig"]).statistic)
    assert fig3["low"] <= fig3["rho"] <= fig3["high"]
