"""scikit-learn's 8x8 digits as a train/test split, groups by class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._fashion_mnist import CLASS_GROUPS_NOTE
from ._split import DatasetDefaults, DatasetSplit


def _digits_split(*, images: bool, n_train: int | None, random_state: int,
                  defaults: DatasetDefaults) -> DatasetSplit:
    """A stratified 70/30 split of sklearn's digits (pixels / 16); images ``(n, 1, 8, 8)``
    when ``images``, else 64 flat features."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.3, stratify=digits.target, random_state=random_state)
    notes = [CLASS_GROUPS_NOTE.format(name="digits")]
    if n_train is not None and n_train < len(y_train):
        X_train, _, y_train, _ = train_test_split(X_train, y_train, train_size=n_train,
                                                  stratify=y_train, random_state=random_state)
        notes.append(f"subsampled the digits training set to {n_train} images (stratified)")
    if images:
        X_train, X_test = X_train.reshape(-1, 1, 8, 8), X_test.reshape(-1, 1, 8, 8)
    return DatasetSplit(
        "digits", X_train, y_train, pd.DataFrame({"class": y_train}), X_test, y_test,
        pd.DataFrame({"class": y_test}), defaults=defaults, notes=tuple(notes),
    )
