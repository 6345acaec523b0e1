"""Audit: train one dense net, prune copies of it at several rates, and tabulate R(a) and ξ."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..compare import prune_copy
from ..metrics import ExcessRiskFrame
from ..nets import PrunableNetClassifier


@dataclass
class AdultSplit:
    """Preprocessed Adult arrays and their sensitive columns."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    A_train: pd.DataFrame
    A_test: pd.DataFrame


def load_adult_split(
    sensitive: Sequence[str], n_train: int | None = None, random_state: int = 0
) -> AdultSplit:
    """Bundled Adult, preprocessed with its ``ColumnTransformer`` fitted on the training part."""
    from ..datasets import load_adult

    data = load_adult()
    X_train, y_train, A_train = data.X_train, data.y_train, data.A_train
    if n_train is not None and n_train < len(X_train):
        rows = np.random.default_rng(random_state).choice(len(X_train), n_train, replace=False)
        X_train, y_train, A_train = X_train.iloc[rows], y_train.iloc[rows], A_train.iloc[rows]
    missing = [name for name in sensitive if name not in data.A_test.columns]
    if missing:
        raise ValueError(
            f"unknown sensitive column(s) {missing}; Adult offers {list(data.A_test.columns)}"
        )
    preprocessor = data.preprocessor.fit(X_train)
    return AdultSplit(
        X_train=np.asarray(preprocessor.transform(X_train), dtype=np.float32),
        X_test=np.asarray(preprocessor.transform(data.X_test), dtype=np.float32),
        y_train=np.asarray(y_train),
        y_test=np.asarray(data.y_test),
        A_train=A_train[list(sensitive)].reset_index(drop=True),
        A_test=data.A_test[list(sensitive)].reset_index(drop=True),
    )


def audit_rates(
    net: PrunableNetClassifier,
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    sensitive_test: Any,
    rates: Sequence[float],
    *,
    method: str | None = None,
    fine_tune_epochs: int = 0,
) -> pd.DataFrame:
    """Per-group excess-risk table for each pruning rate of a fitted dense net.

    Returns
    -------
    pandas.DataFrame
        One row per (rate, group): the :class:`ExcessRiskFrame` columns plus ``rate``,
        ``sparsity``, ``fairness_violation`` (ξ, eq. 3), ``accuracy_gap`` and ``seconds``.
    """
    tables = []
    for rate in rates:
        start = time.perf_counter()
        pruned = prune_copy(
            net, rate, X_train, y_train, method=method, fine_tune_epochs=fine_tune_epochs
        )
        frame = ExcessRiskFrame(pruned, X_test, y_test, sensitive_features=sensitive_test)
        table = frame.by_group
        table.insert(0, "sparsity", pruned.sparsity_)
        table.insert(0, "rate", rate)
        table["fairness_violation"] = frame.fairness_violation
        table["accuracy_gap"] = frame.accuracy_gap
        table["seconds"] = time.perf_counter() - start
        tables.append(table)
    return pd.concat(tables).reset_index()
