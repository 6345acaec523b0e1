"""Many methods × rates × seeds through joblib, one shared dense reference per seed.

Both stages (the dense references, then every method × rate × seed) go through
``joblib.Parallel``, so any joblib backend runs them: loky (the default), Dask
(``joblib.parallel_config(backend="dask")``) or Ray (after ``ray.util.joblib.register_ray()``).

A run that raises does not lose the others: every run goes to its end, then
:class:`RunsFailed` is raised carrying the finished results and one :class:`RunFailure` per
failed run (method, rate, seed, error, traceback).
"""

from __future__ import annotations

import traceback as tb
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .._validation import check_choice
from ..nets import PrunableNetClassifier
from .methods import (
    DEFAULT_METHODS,
    EG_CONSTRAINTS,
    EG_PROBA,
    METHODS,
    SUMMARY_COLUMNS,
    THRESHOLD_CONSTRAINTS,
    MethodResult,
    _resolve_net_params,
    check_compression,
    check_methods,
    fit_dense_reference,
    run_method,
)

__all__ = ["RunFailure", "RunsFailed", "run_methods", "compare_methods"]

#: How many failed runs the message of :class:`RunsFailed` names before "and N more".
_NAMED_FAILURES = 3


@dataclass
class RunFailure:
    """One method × rate × seed run that raised.

    Attributes
    ----------
    method : str
    rate : float
    seed : int
    error : str
        ``"<ExceptionType>: <first line of its message>"``; for every run of a seed whose dense
        reference failed, ``"dense reference: <ExceptionType>: ..."``.
    traceback : str
        The formatted traceback, where the run raised (a string: it crosses process
        boundaries, which exception objects do not always survive).
    """

    method: str
    rate: float
    seed: int
    error: str
    traceback: str = ""

    def describe(self) -> str:
        """``"ceag rate=0.9 seed=2 (ValueError: ...)"``."""
        return f"{self.method} rate={self.rate:g} seed={self.seed} ({self.error})"


class RunsFailed(RuntimeError):
    """Some runs of a sweep raised; the others finished and are kept.

    Attributes
    ----------
    failures : list of RunFailure
        The failed runs, ordered as the results are.
    results : list of MethodResult
        The finished runs (ordered as :func:`run_methods` orders them).
    n_runs : int
        All the runs asked for.
    files : list of Path
        What :func:`~fairprune_sk.benchmark.sweep.run_sweep` wrote of the finished runs.
    sweep : SweepResult or None
        :func:`~fairprune_sk.benchmark.sweep.run_sweep`'s result for the finished runs.
    """

    def __init__(self, failures: Sequence[RunFailure], results: Sequence[MethodResult],
                 n_runs: int, *, files: Sequence[Any] = (), sweep: Any = None) -> None:
        self.failures = list(failures)
        self.results = list(results)
        self.n_runs = int(n_runs)
        self.files = list(files)
        self.sweep = sweep
        super().__init__(self._message())

    def __reduce__(self):  # picklable with its keyword-only attributes
        return (_runs_failed, (self.failures, self.results, self.n_runs, self.files, self.sweep))

    def _message(self) -> str:
        named = "; ".join(f.describe() for f in self.failures[:_NAMED_FAILURES])
        more = len(self.failures) - _NAMED_FAILURES
        if more > 0:
            named += f"; and {more} more"
        kept = (f"; the {len(self.results)} finished run(s) are kept"
                if self.results else "; no run finished")
        csv = [str(f) for f in self.files if str(f).endswith("results.csv")]
        if csv:
            kept += f" in {csv[0]}"
        return f"{len(self.failures)} of {self.n_runs} runs failed: {named}{kept}"


def _runs_failed(failures, results, n_runs, files, sweep) -> RunsFailed:
    return RunsFailed(failures, results, n_runs, files=files, sweep=sweep)


def _failure(method: str, rate: float, seed: int, exc: BaseException) -> RunFailure:
    lines = str(exc).strip().splitlines()
    error = type(exc).__name__ + (f": {lines[0]}" if lines else "")
    return RunFailure(method=method, rate=float(rate), seed=int(seed), error=error,
                      traceback="".join(tb.format_exception(exc)))


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (None: leave as is), restored afterwards."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)



def _dense_job(X_train: Any, y_train: Any, seed: int, params: dict[str, Any],
               threads: int | None) -> PrunableNetClassifier | RunFailure:
    """θ* of one seed, or why it failed (so the other seeds go on)."""
    with _torch_threads(threads):
        try:
            return fit_dense_reference(X_train, y_train, seed=seed, net_params=params)
        except Exception as exc:  # run_methods reports it for every run of the seed
            return _failure("dense reference", 0.0, seed, exc)


def _method_job(method: str, rate: float, seed: int, dense: PrunableNetClassifier,
                data: dict[str, Any], options: dict[str, Any],
                threads: int | None) -> MethodResult | RunFailure:
    """One run, or its :class:`RunFailure` (so the other runs go on)."""
    with _torch_threads(threads):
        try:
            return run_method(method, rate=rate, seed=seed, dense=dense, **data, **options)
        except Exception as exc:
            return _failure(method, rate, seed, exc)


def _parallel_results(jobs: list, n_jobs: int | None) -> Iterator[Any]:
    """Results of joblib jobs as they finish, through the active joblib backend.

    Backends that cannot return a generator (Ray's ``ray.util.joblib`` backend) give all the
    results together once the last job is done.
    """
    from joblib import Parallel

    try:
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    except ValueError as error:  # joblib checks the backend's supports_return_generator
        if "return_as" not in str(error):
            raise
        parallel = Parallel(n_jobs=n_jobs)
    yield from parallel(jobs)


def run_methods(
    X_train: Any,
    y_train: Any,
    A_train: Any,
    X_test: Any,
    y_test: Any,
    A_test: Any,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    rates: Sequence[float] = (0.5, 0.8, 0.9),
    seeds: Sequence[int] = (0, 1, 2),
    net_params: Mapping[str, Any] | None = None,
    n_jobs: int | None = 1,
    threads: int | None = None,
    keep_models: bool = False,
    progress: Callable[[MethodResult, int, int], None] | None = None,
    compress: str = "prune",
    **options: Any,
) -> list[MethodResult]:
    """Run every method × rate × seed, sharing one dense reference per seed.

    The dense references are trained first (one job per seed), then every method × rate ×
    seed is an independent job; both stages go through ``joblib.Parallel``, so
    ``joblib.parallel_config(backend="dask")`` sends them to a Dask cluster, and
    ``parallel_config(backend="ray")`` (after ``ray.util.joblib.register_ray()``) to Ray.

    Parameters
    ----------
    X_train, y_train, A_train, X_test, y_test, A_test
        As for :func:`run_method`.
    methods : sequence of str, default=DEFAULT_METHODS
        Among :data:`METHODS`.
    rates : sequence of float, default=(0.5, 0.8, 0.9)
        Pruning rates in [0, 1).
    seeds : sequence of int, default=(0, 1, 2)
        One dense reference and one run of every method per seed.
    net_params : dict, optional
        As for :func:`run_method`.
    n_jobs : int or None, default=1
        Parallel jobs of ``joblib.Parallel`` (-1: all cores; None: joblib's active default,
        e.g. from ``joblib.parallel_config``). With the default backend, 1 runs in this
        process. Under ``parallel_config(backend="dask")`` the jobs run on the cluster's
        workers whatever ``n_jobs`` is; pass ``n_jobs=-1`` so that each job uses one torch
        thread (see ``threads``). Under Ray's backend ``n_jobs=-1`` uses all the CPUs Ray
        knows of.
    threads : int, optional
        torch CPU threads inside each job; None: 1 when ``n_jobs != 1`` (so jobs do not fight
        over cores), torch's current setting otherwise.
    keep_models : bool, default=False
        Keep each run's fitted final model in its result.
    progress : callable, optional
        Called as ``progress(result, n_done, n_total)`` in this process as each run finishes.
    compress : {"prune", "quantize"}, default="prune"
        Prune θ* at each rate, or quantize it to each width in bits (``rates`` then holds
        ints in [2, 8]; only the :data:`~fairprune_sk.benchmark.methods.QUANTIZABLE_METHODS`).
    **options
        ``eg_constraint``, ``eg_upper_bound``, ``eg_proba``, ``threshold_constraint``,
        ``eg_params``, ``gridsearch_params``: as for :func:`run_method`.

    Returns
    -------
    list of MethodResult
        Ordered by method (as given), rate, seed, whatever order the jobs finished in.

    Raises
    ------
    RunsFailed
        After every run has ended, if any run raised (or the dense reference of its seed
        did); it carries the finished results (``.results``) and the failures (``.failures``:
        method, rate, seed, error and traceback). ``KeyboardInterrupt`` stops the sweep at once.
    ValueError
        For bad arguments, before anything is trained.
    """
    methods = [check_choice(m, "methods", METHODS) for m in methods]
    if not methods or not len(rates) or not len(seeds):
        raise ValueError("methods, rates and seeds must each hold at least one value")
    unknown = set(options) - {"eg_constraint", "eg_upper_bound", "eg_proba",
                              "threshold_constraint", "eg_params", "gridsearch_params"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    for name, choices in (("eg_constraint", EG_CONSTRAINTS), ("eg_proba", EG_PROBA),
                          ("threshold_constraint", THRESHOLD_CONSTRAINTS)):
        if name in options:  # here, not once per run inside the jobs
            check_choice(options[name], name, choices)
    rates = check_compression(compress, methods, rates)
    seeds = [int(s) for s in seeds]
    params = _resolve_net_params(net_params)
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int)
                               or n_jobs == 0):
        raise ValueError(f"n_jobs must be a non-zero int (-1: all cores) or None; got {n_jobs!r}")
    if threads is None and n_jobs != 1:
        threads = 1
    check_methods(methods, y_train, params.get("pruning_method"))

    from joblib import delayed

    dense_jobs = [delayed(_dense_job)(X_train, y_train, seed, params, threads) for seed in seeds]
    dense = dict(zip(seeds, _ordered(dense_jobs, n_jobs), strict=True))

    data = dict(X_train=X_train, y_train=y_train, A_train=A_train, X_test=X_test,
                y_test=y_test, A_test=A_test)
    run_options = {**options, "net_params": params, "keep_model": keep_models,
                   "compress": compress}
    runs = [(method, rate, seed) for method in methods for rate in rates for seed in seeds]
    failures = []
    for method, rate, seed in runs:
        if isinstance(dense[seed], RunFailure):
            failures.append(RunFailure(method, rate, seed, f"dense reference: {dense[seed].error}",
                                       dense[seed].traceback))
    jobs = [
        delayed(_method_job)(method, rate, seed, dense[seed], data, run_options, threads)
        for method, rate, seed in runs if not isinstance(dense[seed], RunFailure)
    ]
    results = []
    done = len(failures)
    for outcome in _parallel_results(jobs, n_jobs):
        done += 1
        if isinstance(outcome, RunFailure):
            failures.append(outcome)
            continue
        results.append(outcome)
        if progress is not None:
            progress(outcome, done, len(runs))
    order = {m: k for k, m in enumerate(methods)}
    results.sort(key=lambda r: (order[r.method], r.rate, r.seed))
    if failures:
        failures.sort(key=lambda f: (order[f.method], f.rate, f.seed))
        raise RunsFailed(failures, results, len(runs))
    return results


def _ordered(jobs: list, n_jobs: int | None) -> list:
    from joblib import Parallel

    return Parallel(n_jobs=n_jobs)(jobs)


def compare_methods(
    X_train: Any,
    y_train: Any,
    A_train: Any,
    X_test: Any,
    y_test: Any,
    A_test: Any,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    rates: Sequence[float] = (0.5, 0.8, 0.9),
    seeds: Sequence[int] = (0, 1, 2),
    net_params: Mapping[str, Any] | None = None,
    n_jobs: int | None = 1,
    **options: Any,
) -> pd.DataFrame:
    """Tidy comparison table: one row per method × rate × seed.

    Parameters
    ----------
    X_train, y_train, A_train, X_test, y_test, A_test
        Training and test data and their sensitive features, as for :func:`run_method`.
    methods, rates, seeds, net_params, n_jobs
        As for :func:`run_methods`.
    **options
        ``threads``, ``progress``, ``keep_models``, ``eg_constraint``, ``eg_upper_bound``,
        ``eg_proba``, ``threshold_constraint``, ``eg_params``, ``gridsearch_params``: as for
        :func:`run_methods`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`: ``method``, ``rate``, ``seed``; on the test data
        ``accuracy`` (and ``accuracy_dense`` of θ*), ``fairness_violation`` (ξ, eq. 3),
        ``max_excess_accuracy_gap`` (max_g ψ_g), ``accuracy_gap``, ``worst_group_accuracy``,
        ``flip_rate`` (overall fraction of predictions changed from θ*); the same six on the
        training data prefixed ``train_`` (how well a constraint holds where it was
        enforced); ``sparsity`` and ``seconds``. ``fairness_violation`` and ``flip_rate`` are
        NaN for ``threshold`` (no probabilities); ψ is defined for every method.

    Raises
    ------
    RunsFailed
        As :func:`run_methods`: if some runs raised, once all have ended; the finished runs
        are in its ``results`` (``pd.DataFrame([r.summary for r in error.results])`` is their
        table).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from fairprune_sk.benchmark.summary import summarize
    >>> from fairprune_sk.models import MLP
    >>> X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    >>> A = np.random.default_rng(0).choice(["a", "b"], size=300)
    >>> table = compare_methods(X[:200], y[:200], A[:200], X[200:], y[200:], A[200:],
    ...                         methods=("none", "ceag"), rates=(0.5,), seeds=(0,),
    ...                         net_params={"module": MLP, "module__hidden_units": (8,),
    ...                                     "max_epochs": 2, "fine_tune_epochs": 1})
    >>> table[["method", "rate", "seed"]]
      method  rate  seed
    0   none   0.5     0
    1   ceag   0.5     0
    >>> summarize(table)["max_excess_accuracy_gap"].columns.tolist()
    ['mean', 'std', 'ci_low', 'ci_high']
    """
    results = run_methods(X_train, y_train, A_train, X_test, y_test, A_test, methods=methods,
                          rates=rates, seeds=seeds, net_params=net_params, n_jobs=n_jobs,
                          **options)
    return pd.DataFrame([r.summary for r in results], columns=list(SUMMARY_COLUMNS))

