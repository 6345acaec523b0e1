"""Fixtures shared by the metrics tests."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression


@pytest.fixture(scope="module")
def two_models(tabular):
    X, y, group = tabular
    dense = LogisticRegression(C=10.0).fit(X, y)
    weak = LogisticRegression(C=0.001).fit(X[:, :3], y)

    class Truncated:  # a "pruned" model: another fitted classifier on fewer features
        classes_ = weak.classes_

        def predict_proba(self, X):
            return weak.predict_proba(np.asarray(X)[:, :3])

    return X, y, group, dense, Truncated()
