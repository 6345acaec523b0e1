"""Deprecated: the benchmark's methods moved to :mod:`fairprune_sk.benchmark`.

- :mod:`fairprune_sk.benchmark.methods`: one method on one split (``METHODS``,
  ``DEFAULT_METHODS``, ``MethodResult``, ``fit_dense_reference``, ``run_method``);
- :mod:`fairprune_sk.benchmark.runner`: many methods × rates × seeds through joblib
  (``run_methods``, ``compare_methods``);
- :mod:`fairprune_sk.benchmark.summary`: means over seeds with t-intervals (``summarize``,
  ``seed_interval``, ``flat_summary``, ``format_summary``).

Importing this module still works, re-exports those names and warns once.
"""

from __future__ import annotations

import warnings
from typing import Any

from .benchmark.methods import (
    BINARY_ONLY,
    DEFAULT_METHODS,
    EG_CONSTRAINTS,
    EG_PROBA,
    FAIR_METHODS,
    FAIR_ONLY_PARAMS,
    FAIR_PHASES,
    GROUP_COLUMNS,
    METHODS,
    NON_BINARY_LABELS,
    RESERVED_PARAMS,
    RUN_METRICS,
    SUMMARY_COLUMNS,
    THRESHOLD_CONSTRAINTS,
    MethodResult,
    default_net_params,
    fit_dense_reference,
    run_method,
)
from .benchmark.runner import compare_methods, run_methods
from .benchmark.summary import (
    DEFAULT_CONFIDENCE,
    flat_summary,
    format_summary,
    seed_interval,
    summarize,
)
from .nets import PrunableNetClassifier

__all__ = [
    "METHODS",
    "DEFAULT_METHODS",
    "SUMMARY_COLUMNS",
    "GROUP_COLUMNS",
    "MethodResult",
    "fit_dense_reference",
    "run_method",
    "run_methods",
    "compare_methods",
    "summarize",
    "format_summary",
    "flat_summary",
    "seed_interval",
]

#: The warning given on import (tests compare it exactly).
DEPRECATION_MESSAGE = (
    "fairprune_sk.compare is deprecated: import from fairprune_sk.benchmark.methods "
    "(METHODS, DEFAULT_METHODS, SUMMARY_COLUMNS, GROUP_COLUMNS, MethodResult, "
    "fit_dense_reference, run_method), fairprune_sk.benchmark.runner (run_methods, "
    "compare_methods) or fairprune_sk.benchmark.summary (summarize, format_summary, "
    "flat_summary, seed_interval)"
)
warnings.warn(DEPRECATION_MESSAGE, DeprecationWarning, stacklevel=2)

# Also re-exported (not public, but imported by name before the move).
_REEXPORTED = (BINARY_ONLY, EG_CONSTRAINTS, EG_PROBA, FAIR_METHODS, FAIR_ONLY_PARAMS, FAIR_PHASES,
               NON_BINARY_LABELS, RESERVED_PARAMS, RUN_METRICS, THRESHOLD_CONSTRAINTS,
               DEFAULT_CONFIDENCE, default_net_params)


def prune_copy(
    net: PrunableNetClassifier,
    rate: float,
    X: Any,
    y: Any,
    *,
    method: str | None = None,
    fine_tune_epochs: int = 0,
) -> PrunableNetClassifier:
    """Deprecated: use ``net.pruned_copy(rate, method, X=X, y=y, fine_tune_epochs=n)``."""
    warnings.warn(
        "fairprune_sk.compare.prune_copy is deprecated: use "
        "net.pruned_copy(rate, method, X=X, y=y, fine_tune_epochs=n)",
        DeprecationWarning,
        stacklevel=2,
    )
    return net.pruned_copy(rate, method, X=X, y=y, fine_tune_epochs=fine_tune_epochs)
