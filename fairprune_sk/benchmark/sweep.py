"""The benchmark sweep: datasets × models × pruning rates × methods × seeds.

The pieces live in their own modules and are re-exported here (``from
fairprune_sk.benchmark.sweep import X`` keeps working for every name): the data in
:mod:`~fairprune_sk.benchmark.data`, the nets in :mod:`~fairprune_sk.benchmark.configs`, the
results table in :mod:`~fairprune_sk.benchmark.results`, the printing in
:mod:`~fairprune_sk.benchmark.report`.

:func:`load_benchmark_data` gives a train/test split with sensitive groups, :func:`net_params_for`
the net of a model name, and :func:`run_sweep` runs every method × rate × seed through
:func:`fairprune_sk.benchmark.runner.run_methods` (one dense reference per seed, independent
runs in ``joblib.Parallel``), then writes

- ``results.csv``: one row per dataset × model × method × rate × seed × (test) group, with the
  columns of :class:`~fairprune_sk.ExcessRiskFrame` (``count``, ``loss_dense``,
  ``loss_pruned``, ``excess_risk`` R(a), ``accuracy_dense``, ``accuracy_pruned``,
  ``accuracy_drop``, ``excess_accuracy_gap`` ψ_g, ``flip_rate``; "dense" is the common dense
  net θ*, "pruned" the method's final model), ``accuracy_own_dense`` (the dense net the method
  itself pruned), then the run-level ``fairness_violation`` ξ, ``max_excess_accuracy_gap``, gaps,
  worst-group accuracy, overall accuracies and flip rate, the same on the training data
  (``train_*``), sparsity and wall time (:data:`RESULT_COLUMNS`);
- ``summary.csv``: per method × rate, the mean over seeds with a 95 % Student-t interval
  (``<metric>_mean``, ``<metric>_std``, ``<metric>_ci_low``, ``<metric>_ci_high``, ``n_seeds``);
- ``group_accuracy.png`` (the paper's Fig. 1) and ``methods.png`` (its Fig. 5);
- ``meta.json``: the configuration and the total wall time (and ``failed_runs``, if any).

A run that raises does not lose the others: the tables and ``meta.json`` of the finished runs
are written, then :class:`~fairprune_sk.benchmark.runner.RunsFailed` names the failed runs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from .configs import MODELS, net_params_for
from .data import (
    DATASETS,
    BenchmarkData,
    load_benchmark_data,
    load_utkface_split,
)
from .methods import SUMMARY_COLUMNS, MethodResult
from .report import _Progress, print_summary
from .results import RESULT_COLUMNS, RUN_COLUMNS, results_table
from .runner import RunFailure, RunsFailed, run_methods
from .summary import flat_summary, summarize

__all__ = [
    "DATASETS",
    "MODELS",
    "RESULT_COLUMNS",
    "RUN_COLUMNS",
    "BenchmarkData",
    "SweepResult",
    "load_benchmark_data",
    "load_utkface_split",
    "net_params_for",
    "results_table",
    "run_sweep",
    "print_summary",
]



@dataclass
class SweepResult:
    """What :func:`run_sweep` produced.

    Attributes
    ----------
    table : pandas.DataFrame
        ``results.csv``: one row per run × test group.
    runs : pandas.DataFrame
        One row per run (:func:`~fairprune_sk.benchmark.runner.compare_methods`' schema).
    summary : pandas.DataFrame
        Mean, std and 95 % t-interval over seeds per method × rate
        (:func:`~fairprune_sk.benchmark.summary.summarize`).
    files : list of Path
        Files written (empty when ``out`` is None).
    seconds : float
        Wall time of the sweep.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path]
    seconds: float
    runs: pd.DataFrame | None = None


def run_sweep(
    data: BenchmarkData,
    *,
    model: str = "mlp",
    methods: Sequence[str] = ("none", "ceag"),
    rates: Sequence[float] = (0.0, 0.5, 0.9),
    seeds: Sequence[int] = (0,),
    net_params: Mapping[str, Any] | None = None,
    n_jobs: int | None = 1,
    threads: int | None = None,
    out: str | Path | None = "results",
    figures: bool = True,
    stream: TextIO | None = None,
    progress: bool | Callable[[MethodResult, int, int], None] = True,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> SweepResult:
    """Run every method × rate × seed on one dataset and model; write the table and figures.

    Parameters
    ----------
    data : BenchmarkData
        From :func:`load_benchmark_data`.
    model : str, default="mlp"
        Name recorded in the table; the net itself is ``net_params``
        (:func:`net_params_for` ``(model, dataset=data.name)`` if None).
    methods, rates, seeds : sequences
        As for :func:`~fairprune_sk.benchmark.runner.run_methods`.
    net_params : dict, optional
        Parameters of the nets (``module`` included).
    n_jobs : int or None, default=1
        Parallel runs through ``joblib.Parallel`` (any joblib backend, Dask included; -1: all
        cores or workers).
    threads : int, optional
        torch threads per run; None: 1 when ``n_jobs != 1``, else torch's setting.
    out : str or Path or None, default="results"
        Folder of ``results.csv``, ``summary.csv``, ``meta.json`` and the PNG figures; None
        writes nothing.
    figures : bool, default=True
        Draw the figures (needs ``out``).
    stream : text stream, optional
        Where progress and notes go (``sys.stdout`` if None).
    progress : bool or callable, default=True
        Print one line per finished run; a callable replaces the printer.
    config : dict, optional
        Extra configuration recorded in ``meta.json`` (the CLI passes its arguments).
    **options
        ``eg_constraint``, ``eg_upper_bound``, ``eg_proba``, ``threshold_constraint``,
        ``eg_params``, ``gridsearch_params``: as for
        :func:`~fairprune_sk.benchmark.methods.run_method`.

    Returns
    -------
    SweepResult

    Raises
    ------
    RunsFailed
        If some runs raised: the finished runs are written first (``results.csv``,
        ``summary.csv``, ``meta.json`` with ``failed_runs``; no figures), and the exception
        carries them (``.sweep``, ``.files``) and the failures (``.failures``).
    """
    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()
    params = net_params_for(model, dataset=data.name) if net_params is None else dict(net_params)
    printer = _Progress(stream) if progress is True else (progress or None)
    failed: RunsFailed | None = None
    try:
        results = run_methods(
            data.X_train, data.y_train, data.A_train, data.X_test, data.y_test, data.A_test,
            methods=methods, rates=rates, seeds=seeds, net_params=params, n_jobs=n_jobs,
            threads=threads, progress=printer, **options,
        )
    except RunsFailed as error:
        if not error.results:
            raise
        failed, results = error, error.results
    table = results_table(results, dataset=data.name, model=model, sensitive=data.sensitive)
    runs = pd.DataFrame([r.summary for r in results], columns=list(SUMMARY_COLUMNS))
    summary = summarize(runs)
    seconds = time.perf_counter() - start
    files: list[Path] = []
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "results.csv", index=False)
        flat_summary(summary).to_csv(out / "summary.csv", index=False)
        files += [out / "results.csv", out / "summary.csv"]
        if figures and failed is None:
            title = f"{data.name}, {model}, groups by {data.sensitive}"
            from .figures import plot_sweep

            files += plot_sweep(table, out, title=title)
        seconds = time.perf_counter() - start
        meta = {
            "dataset": data.name, "model": model, "sensitive": data.sensitive,
            "methods": list(methods), "rates": [float(r) for r in rates],
            "seeds": [int(s) for s in seeds], "n_jobs": n_jobs, "threads": threads,
            "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
            "notes": data.notes, "seconds": seconds,
            "net_params": {k: _jsonable(v) for k, v in params.items()},
            **{k: _jsonable(v) for k, v in options.items()},
            **{k: _jsonable(v) for k, v in (config or {}).items()},
        }
        if failed is not None:
            meta["failed_runs"] = [_failure_record(f) for f in failed.failures]
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
        files.append(out / "meta.json")
    sweep = SweepResult(table=table, summary=summary, files=files, seconds=seconds, runs=runs)
    if failed is not None:
        raise RunsFailed(failed.failures, results, failed.n_runs, files=files,
                         sweep=sweep) from failed
    return sweep


def _failure_record(failure: RunFailure) -> dict[str, Any]:
    return {"method": failure.method, "rate": failure.rate, "seed": failure.seed,
            "error": failure.error, "traceback": failure.traceback}


def _jsonable(value: Any) -> Any:
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)
