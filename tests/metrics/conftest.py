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


@pytest.fixture(scope="session")
def digits():
    """400 rows of sklearn's digits (64 features in [0, 1], float32), 10 classes, and a group
    per row: a minority of about 15 % ("c") beside "a" and "b"."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = (X[:400] / 16.0).astype(np.float32), y[:400]
    rng = np.random.default_rng(0)
    group = rng.choice(np.array(["a", "b", "c"]), size=len(y), p=[0.5, 0.35, 0.15])
    return X, y, group


@pytest.fixture(scope="session")
def _dense_state(digits):
    import torch

    X, y, _ = digits
    torch.manual_seed(0)
    module = _mlp()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    inputs, targets = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(inputs), targets).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _mlp():
    from torch import nn

    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, 10))


@pytest.fixture
def dense_module(_dense_state):
    """A fresh copy of a small MLP (64-32-16-10, logits) trained on ``digits``."""
    module = _mlp()
    module.load_state_dict(_dense_state)
    return module.eval()
