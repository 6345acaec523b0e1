"""Shared fixtures: small, fast data and nets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from factories import make_net
from sklearn.datasets import make_classification

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tabular():
    """600 samples, 8 features, binary y and a 3-valued group with a small minority."""
    X, y = make_classification(
        n_samples=600, n_features=8, n_informative=5, random_state=0, class_sep=1.0
    )
    rng = np.random.default_rng(0)
    group = rng.choice(np.array(["a", "b", "c"]), size=len(y), p=[0.7, 0.2, 0.1])
    return X.astype(np.float64), y, pd.Series(group, name="group")


@pytest.fixture
def fitted_net(tabular):
    X, y, _ = tabular
    return make_net().fit(X, y)


def write_utkface_folder(folder, n=48):
    """Tiny JPEGs named in the UTKFace convention (``[age]_[gender]_[race]_[date].jpg``); the
    race is readable from the colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        race, gender, age = i % 3, (i // 3) % 2, int(rng.integers(1, 90))
        pixels = rng.integers(0, 60, size=(12, 12, 3), dtype=np.uint8)
        pixels[..., race] += 150
        Image.fromarray(pixels).save(folder / f"{age}_{gender}_{race}_2017011617{i:07d}.jpg")
    return folder


@pytest.fixture
def utkface_folder(tmp_path):
    """A folder of 48 generated UTKFace-style JPEGs (3 races, 2 genders)."""
    return write_utkface_folder(tmp_path / "faces")
