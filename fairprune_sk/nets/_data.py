"""The per-sample data that travels with X through skorch's batches.

``fit`` validates X, y and ``sample_weight`` before they reach skorch; per-sample metadata
(sample weights, and the groups and reference outputs of
:class:`~fairprune_sk.FairConstrainedNet`) travel with X in a dict, so skorch's batching and
validation split slice them with X.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["INPUT_KEY", "SAMPLE_WEIGHT_KEY", "as_numpy"]

#: Key of the input array when a net's training data travels as a dict with per-sample metadata.
INPUT_KEY = "X"
SAMPLE_WEIGHT_KEY = "sample_weight"


def as_numpy(value: Any) -> np.ndarray:
    """A batch's tensor (detached, on the CPU) or array as an ndarray."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)

