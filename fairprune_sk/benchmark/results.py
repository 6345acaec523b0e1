"""The results table of a sweep (``results.csv``): one row per run × test group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .methods import GROUP_COLUMNS, SUMMARY_COLUMNS, MethodResult

__all__ = ["RUN_COLUMNS", "RESULT_COLUMNS", "results_table"]

#: Run-level columns of ``results.csv`` (repeated on every group row of the run): the keys of
#: :data:`~fairprune_sk.benchmark.methods.SUMMARY_COLUMNS`, those that share a name with a per-group
#: column (``accuracy_dense``, ``flip_rate``) and ``accuracy`` prefixed ``overall_``.
RUN_COLUMNS = {
    key: (f"overall_{key}" if key in (*GROUP_COLUMNS, "accuracy") else key)
    for key in SUMMARY_COLUMNS if key not in ("method", "rate", "seed")
}
#: Columns of ``results.csv``, in order (one row per run × test group).
RESULT_COLUMNS = (
    "dataset",
    "model",
    "sensitive",
    "method",
    "rate",
    "seed",
    "group",
    *GROUP_COLUMNS,
    "accuracy_own_dense",
    *RUN_COLUMNS.values(),
)


def _group_label(label: Any) -> str:
    if isinstance(label, tuple):
        return " & ".join(str(part) for part in label)
    return str(label)


def results_table(results: Sequence[MethodResult], *, dataset: str, model: str,
                  sensitive: str) -> pd.DataFrame:
    """One row per run × test group (the schema of ``results.csv``, :data:`RESULT_COLUMNS`)."""
    frames = []
    for result in results:
        frame = result.by_group_test.copy()
        frame.insert(0, "group", [_group_label(g) for g in frame.index])
        own = result.own_dense_accuracy
        frame["accuracy_own_dense"] = np.nan if own is None else own.to_numpy()
        for key, column in RUN_COLUMNS.items():
            frame[column] = result.summary[key]
        frame["dataset"], frame["model"], frame["sensitive"] = dataset, model, sensitive
        frame["method"], frame["rate"], frame["seed"] = result.method, result.rate, result.seed
        frames.append(frame.reset_index(drop=True))
    if not frames:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(RESULT_COLUMNS)]
