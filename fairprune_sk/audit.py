"""Audit: train one dense net, prune copies of it at several rates, and tabulate R(a), ξ and ψ.

The ``fairprune audit`` subcommand lives in :mod:`fairprune_sk.cli.audit`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .metrics import ExcessRiskFrame
from .nets import PrunableNetClassifier

#: Columns of the audit table that get ``_ci_low`` / ``_ci_high`` bootstrap bounds.
CI_COLUMNS = ("excess_risk", "excess_accuracy_gap", "accuracy_drop")


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
    from .datasets import load_adult

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
    n_boot: int | None = None,
    random_state: Any = None,
) -> tuple[pd.DataFrame, dict[float, ExcessRiskFrame]]:
    """Per-group audit table for each pruning rate of a fitted dense net.

    Parameters
    ----------
    net : PrunableNetClassifier
        Fitted dense net θ*; it is not modified (each rate prunes a copy).
    X_train, y_train : array-like
        Fine-tuning data.
    X_test, y_test, sensitive_test : array-like
        Evaluation data and its groups.
    rates : sequence of float
        Pruning rates.
    method : str, optional
        Pruning method (default: the net's ``pruning_method``).
    fine_tune_epochs : int, default=0
        Epochs of fine-tuning after pruning, masks held.
    n_boot : int, optional
        Bootstrap resamples of the evaluation rows for 95 % intervals (None: no intervals).
    random_state : None or int
        Seed of the resamples.

    Returns
    -------
    table : pandas.DataFrame
        One row per (rate, group): ``rate``, ``sparsity``, the group column(s), the
        :class:`ExcessRiskFrame` columns, ``<column>_ci_low`` / ``<column>_ci_high`` for
        :data:`CI_COLUMNS` (with ``n_boot``), and per rate ``fairness_violation`` (ξ, eq. 3),
        ``max_excess_accuracy_gap`` (both with intervals), ``accuracy_gap`` and ``seconds``.
    frames : dict
        The :class:`ExcessRiskFrame` of each rate.
    """
    tables, frames = [], {}
    for rate in rates:
        start = time.perf_counter()
        pruned = net.pruned_copy(rate, method, X=X_train, y=y_train,
                                 fine_tune_epochs=fine_tune_epochs)
        frame = ExcessRiskFrame(pruned, X_test, y_test, sensitive_features=sensitive_test,
                                n_boot=n_boot, random_state=random_state)
        frames[rate] = frame
        table = frame.by_group_with_ci(CI_COLUMNS)
        table.insert(0, "sparsity", pruned.sparsity_)
        table.insert(0, "rate", rate)
        table["fairness_violation"] = frame.fairness_violation
        table["max_excess_accuracy_gap"] = frame.max_excess_accuracy_gap
        if n_boot is not None:
            xi_low, xi_high = frame.difference_ci()[0], frame.difference_ci()[-1]
            psi_low, psi_high = frame.group_max_ci()[0], frame.group_max_ci()[-1]
            table["fairness_violation_ci_low"] = xi_low["excess_risk"]
            table["fairness_violation_ci_high"] = xi_high["excess_risk"]
            table["max_excess_accuracy_gap_ci_low"] = psi_low["excess_accuracy_gap"]
            table["max_excess_accuracy_gap_ci_high"] = psi_high["excess_accuracy_gap"]
        table["accuracy_gap"] = frame.accuracy_gap
        table["seconds"] = time.perf_counter() - start
        tables.append(table)
    return pd.concat(tables).reset_index(), frames
