"""The benchmark sweep: one dataset and model × pruning rates × methods × seeds.

:func:`run_sweep` runs every method × rate × seed on a
:class:`~fairprune_sk.datasets.DatasetSplit` through
:func:`fairprune_sk.benchmark.runner.run_methods` (one dense reference per seed, independent
runs in ``joblib.Parallel``), then writes

- ``results.csv``: one row per dataset × model × method × rate × seed × (test) group, with the
  columns of :class:`~fairprune_sk.ExcessRiskFrame` (``count``, ``loss_dense``,
  ``loss_pruned``, ``excess_risk`` R(a), ``accuracy_dense``, ``accuracy_pruned``,
  ``accuracy_drop``, ``excess_accuracy_gap`` ψ_g, ``flip_rate``; "dense" is the common dense
  net θ*, "pruned" the method's final model), ``accuracy_own_dense`` (the dense net the method
  itself pruned), then the run-level ``fairness_violation`` ξ, ``max_excess_accuracy_gap``, gaps,
  worst-group accuracy, overall accuracies and flip rate, the same on the training data
  (``train_*``), sparsity and wall time (:data:`~fairprune_sk.benchmark.results.RESULT_COLUMNS`);
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

from ..datasets import DatasetSplit
from .methods import SUMMARY_COLUMNS, MethodResult
from .report import _Progress
from .results import results_table
from .runner import RunFailure, RunsFailed, run_methods
from .summary import flat_summary, summarize

__all__ = ["SWEEP_FINE_TUNE_EPOCHS", "SWEEP_NET_DEFAULTS", "SweepResult", "run_sweep",
           "sweep_net_params"]

#: The sweep's training settings where they differ from the dataset's audit defaults: SGD with
#: momentum, two fine-tuning epochs after pruning, an MLP (64, 64).
SWEEP_NET_DEFAULTS: dict[str, Any] = {"momentum": 0.9, "fine_tune_epochs": 2,
                                      "hidden_units": (64, 64)}
#: Fine-tuning epochs of the datasets whose default differs from :data:`SWEEP_NET_DEFAULTS`'.
#: Fashion-MNIST's 10,000 images give 79 batches an epoch; the mitigations' dual steps need
#: about 300 batches to settle (docs/mitigation.md: at 2 epochs CEAG cut nothing and cost 2.6
#: points of accuracy, at 4 it cut max ψ by 70 %).
SWEEP_FINE_TUNE_EPOCHS: dict[str, int] = {"fashion_mnist": 4}


def sweep_net_params(
    data: DatasetSplit,
    model: str | None = None,
    *,
    dual_lr: float | str = "auto",
    dual_update: str | int = "auto",
    constraint_target: str = "group_loss",
    tolerance: float | str = "auto",
    **net_options: Any,
) -> dict[str, Any]:
    """``net_params`` of :func:`run_sweep`: the dataset's net with :data:`SWEEP_NET_DEFAULTS`,
    plus the parameters of the :class:`~fairprune_sk.constrained.FairConstrainedNet` methods.

    Parameters
    ----------
    data : DatasetSplit
        Its :attr:`~fairprune_sk.datasets.DatasetSplit.defaults` fill what is not given.
    model : {"mlp", "cnn", "resnet18"}, optional
        None: the dataset's default model.
    dual_lr, dual_update, tolerance : float, int or "auto"
        Of every FairConstrainedNet method (``fair_*``, ``ceag``, ``ceag_heldout``); "auto"
        resolves per constraint target (see docs/mitigation.md).
    constraint_target : str, default="group_loss"
        What the ``fair_*`` methods constrain: ``group_loss`` (the paper's equal group losses),
        ``excess_risk`` or ``accuracy_gap``. ``ceag`` always constrains ``accuracy_gap``.
    **net_options
        Of :meth:`~fairprune_sk.datasets.DatasetDefaults.net_params` (``max_epochs``, ``lr``,
        ``momentum``, ``hidden_units``, ``pruning_method``, ``device``, ...); None values
        take the defaults.

    Returns
    -------
    dict
    """
    given = {key: value for key, value in net_options.items() if value is not None}
    defaults = dict(SWEEP_NET_DEFAULTS)
    if data.name in SWEEP_FINE_TUNE_EPOCHS:
        defaults["fine_tune_epochs"] = SWEEP_FINE_TUNE_EPOCHS[data.name]
    params = data.defaults.net_params(model, **{**defaults, **given})
    params.update(dual_lr=dual_lr, dual_update=dual_update,
                  constraint_target=constraint_target, tolerance=tolerance)
    return params


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
    data: DatasetSplit,
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
    compress: str = "prune",
    **options: Any,
) -> SweepResult:
    """Run every method × rate × seed on one dataset and model; write the table and figures.

    Parameters
    ----------
    data : DatasetSplit
        From :func:`~fairprune_sk.datasets.load_dataset`.
    model : str, default="mlp"
        Name recorded in the table; the net itself is ``net_params``
        (:func:`sweep_net_params` ``(data, model)`` if None).
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
    compress : {"prune", "quantize"}, default="prune"
        Prune θ* at each rate, or quantize it to each width in bits (``rates`` holds the
        widths; the tables then have a ``bits`` column instead of ``rate``, and the figures are
        drawn against the width, from many bits to few).
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
    params = sweep_net_params(data, model) if net_params is None else dict(net_params)
    level = "bits" if compress == "quantize" else "rate"
    printer = _Progress(stream, level=level) if progress is True else (progress or None)
    failed: RunsFailed | None = None
    try:
        results = run_methods(
            data.X_train, data.y_train, data.groups_train, data.X_test, data.y_test,
            data.groups_test,
            methods=methods, rates=rates, seeds=seeds, net_params=params, n_jobs=n_jobs,
            threads=threads, progress=printer, compress=compress, **options,
        )
    except RunsFailed as error:
        if not error.results:
            raise
        failed, results = error, error.results
    table = results_table(results, dataset=data.name, model=model, sensitive=data.grouping)
    runs = pd.DataFrame([r.summary for r in results], columns=list(SUMMARY_COLUMNS))
    summary = summarize(runs)
    if compress == "quantize":  # the runs' level is a width in bits: named so in the tables
        table, runs = (part.rename(columns={"rate": level}) for part in (table, runs))
        summary = summary.rename_axis(index={"rate": level})
    seconds = time.perf_counter() - start
    files: list[Path] = []
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "results.csv", index=False)
        flat_summary(summary).to_csv(out / "summary.csv", index=False)
        files += [out / "results.csv", out / "summary.csv"]
        if figures and failed is None:
            title = f"{data.name}, {model}, groups by {data.grouping}"
            from .figures import plot_sweep

            files += plot_sweep(table, out, title=title, level=level)
        seconds = time.perf_counter() - start
        meta = {
            "dataset": data.name, "model": model, "sensitive": data.grouping,
            "methods": list(methods), "compress": compress,
            **({"bits": [int(r) for r in rates]} if compress == "quantize"
               else {"rates": [float(r) for r in rates]}),
            "seeds": [int(s) for s in seeds], "n_jobs": n_jobs, "threads": threads,
            "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
            "notes": list(data.notes), "seconds": seconds,
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
