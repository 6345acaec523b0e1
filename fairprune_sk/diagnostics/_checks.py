"""Coercion of the diagnostics' data: ``X``, class indices ``y`` and group codes.

They turn what users pass (numpy, pandas, tensors) into the arrays the evaluator slices batch by
batch; plain arguments are checked by ``fairprune_sk._validation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch


def _as_input_array(X: Any) -> np.ndarray:
    """``X`` as a numeric ndarray of shape (n_samples, ...), without copying float data."""
    if isinstance(X, Mapping):
        raise ValueError(
            "X must be an array-like of shape (n_samples, n_features) or (n_samples, C, H, W); "
            "got a mapping"
        )
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    elif isinstance(X, pd.DataFrame | pd.Series):
        X = X.to_numpy()
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(
            "X must have shape (n_samples, n_features) or (n_samples, C, H, W); "
            f"got an array of shape {X.shape}"
        )
    if not np.issubdtype(X.dtype, np.floating):
        try:
            X = X.astype(np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "X must be numeric (preprocess categorical columns first); "
                f"could not convert its dtype {X.dtype} to float"
            ) from exc
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity")
    return X


def _as_class_indices(y: Any, n_samples: int) -> np.ndarray:
    """Integer class indices ``0 .. n_classes - 1`` (the core functions take these)."""
    y = np.asarray(y.detach().cpu() if torch.is_tensor(y) else y)
    if y.ndim != 1:
        y = y.ravel()
    if len(y) != n_samples:
        raise ValueError(f"y has {len(y)} samples but X has {n_samples}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        raise ValueError(
            f"y must hold integer class indices 0 .. n_classes - 1; got dtype {y.dtype} "
            "(GroupDiagnostics maps labels of net.classes_ for you)"
        )
    y = y.astype(np.int64)
    if n_samples and y.min() < 0:
        raise ValueError(f"y must hold class indices >= 0; got {int(y.min())}")
    return y


def _check_class_range(top: int, n_outputs: int) -> None:
    """The largest class index of ``y`` must be a column of the module's logits."""
    if top >= n_outputs:
        raise ValueError(
            f"y holds class index {top} but the module outputs {n_outputs} classes"
        )


def _as_group_codes(groups: Any, n_samples: int) -> tuple[np.ndarray, int]:
    codes = np.asarray(groups)
    if codes.ndim != 1 or len(codes) != n_samples:
        raise ValueError(
            f"groups must be 1-D with one code per sample; got shape {codes.shape} "
            f"for {n_samples} samples"
        )
    if not np.issubdtype(codes.dtype, np.integer) or (n_samples and codes.min() < 0):
        raise ValueError(
            "groups must hold integer group codes 0 .. n_groups - 1 "
            "(see fairprune_sk.metrics.group_codes to encode labels)"
        )
    n_groups = int(codes.max()) + 1 if n_samples else 0
    return codes.astype(np.int64), n_groups
