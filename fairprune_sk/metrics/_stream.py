"""The audit of a torch ``Dataset`` or ``DataLoader``, one batch at a time.

Both models see each batch once; every batch is reduced at once to its per-sample results
(:class:`~._columns._SampleColumns`, the labels and the sensitive features), so memory grows
with the number of samples only by those results, never by the inputs or the probabilities.

Items (what ``dataset[i]`` returns) may be:

- ``(x, y)``: an input and its label (a tuple or list of two);
- ``x`` alone (a tensor or array; or a tuple of one): ``y`` must then be passed;
- a dict with the input under ``"X"``, optionally the label under ``"y"``, and any other fields
  (the sensitive features among them, named by ``sensitive_features="field"`` or a tuple of
  field names).

A ``DataLoader`` is iterated as it is (its own batch size and ``collate_fn``); a ``Dataset`` is
batched with ``DataLoader(dataset, batch_size, shuffle=False)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ._columns import _SampleColumns
from ._outputs import Model, inference
from ._proba import check_proba, encode_y

__all__ = ["INPUT_FIELD", "LABEL_FIELD", "is_stream", "stream_columns"]

#: Key of the input in a dict item.
INPUT_FIELD = "X"
#: Key of the label in a dict item.
LABEL_FIELD = "y"


def is_stream(X: Any) -> bool:
    """Whether ``X`` is a torch ``Dataset`` or ``DataLoader`` (streamed, not held in memory)."""
    return isinstance(X, (Dataset, DataLoader))


def sensitive_fields(sensitive_features: Any) -> tuple[str, ...] | None:
    """The item fields named by ``sensitive_features`` (a str or a tuple of str), else None."""
    if isinstance(sensitive_features, str):
        return (sensitive_features,)
    if (isinstance(sensitive_features, tuple) and sensitive_features
            and all(isinstance(name, str) for name in sensitive_features)):
        return sensitive_features
    return None


@dataclass
class _Batch:
    x: Any
    y: Any
    fields: Mapping[str, Any]


def _as_array(value: Any) -> np.ndarray:
    """A batch's labels or field as an ndarray of its own: a view would keep the batch's small
    tensors alive, and thousands of them scattered over the heap keep it from shrinking (the
    process's memory then grows with n by far more than the values)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    return np.array(value)


def _parse(batch: Any) -> _Batch:
    """A collated batch as its input, its labels (or None) and its dict fields."""
    if isinstance(batch, Mapping):
        if INPUT_FIELD not in batch:
            raise ValueError(
                f"dict items must hold the input under {INPUT_FIELD!r} (and optionally the "
                f"label under {LABEL_FIELD!r}); got the keys {sorted(map(str, batch))}"
            )
        return _Batch(batch[INPUT_FIELD], batch.get(LABEL_FIELD), batch)
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return _Batch(batch[0], batch[1], {})
        if len(batch) == 1:
            return _Batch(batch[0], None, {})
        raise ValueError(
            f"items must be (x, y), x alone, or a dict; got items of {len(batch)} values: a "
            f"dict with the input under {INPUT_FIELD!r} can carry more fields"
        )
    return _Batch(batch, None, {})


def _loader(X: Any, batch_size: int) -> DataLoader:
    if isinstance(X, DataLoader):
        return X
    return DataLoader(X, batch_size=batch_size, shuffle=False)


def _known_length(X: Any) -> int | None:
    """The number of samples a stream will yield, when it says so before the pass."""
    dataset = X.dataset if isinstance(X, DataLoader) else X
    if isinstance(X, DataLoader) and X.drop_last:
        return None
    try:
        return len(dataset)
    except TypeError:  # an IterableDataset without __len__
        return None


def _shuffles(loader: DataLoader) -> bool:
    samplers = (loader.sampler, getattr(loader.batch_sampler, "sampler", None))
    return any(isinstance(sampler, RandomSampler) for sampler in samplers)


def _check_aligned(X: Any, y: np.ndarray | None, fields: tuple[str, ...] | None,
                   sensitive_features: Any) -> None:
    """Arrays given beside a stream must follow its order and have its length."""
    aligned = [name for name, given in (("y", y is not None),
                                         ("sensitive_features", fields is None)) if given]
    if not aligned:
        return
    if isinstance(X, DataLoader) and _shuffles(X):
        raise ValueError(
            f"X is a DataLoader that shuffles, so {' and '.join(aligned)} given as arrays "
            "cannot be aligned with its batches: pass a DataLoader with shuffle=False, or "
            "take them from the items (see ExcessRiskFrame's X)"
        )
    n_samples = _known_length(X)
    if n_samples is None:
        return
    if y is not None and len(y) != n_samples:
        raise ValueError(f"y has {len(y)} labels but X holds {n_samples} samples")
    if fields is None and len(sensitive_features) != n_samples:
        raise ValueError(
            f"sensitive_features has {len(sensitive_features)} rows but X holds {n_samples} "
            "samples; pass one group label per sample, or name a field of dict items"
        )


@dataclass
class StreamResult:
    """What one pass over a stream leaves: per-sample results, labels, groups, classes."""

    y: np.ndarray
    y_index: np.ndarray
    columns: _SampleColumns
    sensitive_features: Any
    classes: np.ndarray


def stream_columns(
    pruned: Model,
    dense: Model,
    X: Any,
    y: Any,
    *,
    sensitive_features: Any,
    classes: np.ndarray | None,
    classes_name: str,
    batch_size: int,
    device: Any,
) -> StreamResult:
    """One pass of both models over a ``Dataset`` / ``DataLoader``, reduced batch by batch.

    Parameters
    ----------
    pruned, dense : Model
    X : torch.utils.data.Dataset or DataLoader
    y : array-like of shape (n_samples,) or None
        Labels aligned with the stream; None: from the items.
    sensitive_features : array-like, str or tuple of str
        Aligned with the stream, or the names of fields of dict items.
    classes : ndarray or None
        Labels of the probability columns; None: ``0 .. K-1`` for the ``K`` outputs.
    classes_name : str
        How messages name the labels of the columns.
    batch_size : int
        Batch size of a ``Dataset`` (a ``DataLoader`` keeps its own).
    device : str, torch.device or None
        Where plain torch modules compute.
    """
    fields = sensitive_fields(sensitive_features)
    y_given = None if y is None else np.asarray(y).ravel()
    _check_aligned(X, y_given, fields, sensitive_features)
    parts: list[_SampleColumns] = []
    labels: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    groups: dict[str, list[np.ndarray]] = {name: [] for name in fields or ()}
    offset = 0
    with inference([pruned, dense], device):
        for raw in _loader(X, batch_size):
            batch = _parse(raw)
            proba_pruned = check_proba(
                pruned.proba_of_batch(batch.x), pruned.describe("batch"), n_samples=None,
                n_classes=None if classes is None else len(classes), row_offset=offset,
            )
            n_batch = len(proba_pruned)
            if classes is None:
                classes = np.arange(proba_pruned.shape[1])
            proba_dense = check_proba(
                dense.proba_of_batch(batch.x), dense.describe("batch"), n_samples=n_batch,
                n_classes=len(classes), row_offset=offset,
            )
            if y_given is not None:
                y_batch = y_given[offset:offset + n_batch]
            elif batch.y is None:
                raise ValueError(
                    "y is None and the items of X carry no label: pass y=, or make the items "
                    f"(x, y) pairs or dicts with the label under {LABEL_FIELD!r}"
                )
            else:
                y_batch = _as_array(batch.y).ravel()
            if len(y_batch) != n_batch:
                raise ValueError(
                    f"the batch at sample {offset} has {n_batch} samples but {len(y_batch)} "
                    "labels (y must have one label per sample of X)"
                )
            for name in groups:
                if name not in batch.fields:
                    raise ValueError(
                        f"sensitive_features names the field {name!r}, but the items of X "
                        f"have no such field (fields: {sorted(map(str, batch.fields))}); "
                        "items must be dicts holding it"
                    )
                groups[name].append(_as_array(batch.fields[name]).reshape(n_batch))
            y_index = encode_y(y_batch, classes, name=classes_name)
            parts.append(_SampleColumns.of(y_index, proba_dense, proba_pruned))
            labels.append(y_batch)
            indices.append(y_index)
            offset += n_batch
    if not parts:
        raise ValueError("X yields no samples")
    if y_given is not None and len(y_given) != offset:
        raise ValueError(f"y has {len(y_given)} labels but X yielded {offset} samples")
    if fields is not None:
        sensitive_features = (
            pd.Series(np.concatenate(groups[fields[0]]), name=fields[0]) if len(fields) == 1
            else pd.DataFrame({name: np.concatenate(groups[name]) for name in fields})
        )
    return StreamResult(
        y=np.concatenate(labels),
        y_index=np.concatenate(indices),
        columns=_SampleColumns.concatenate(parts),
        sensitive_features=sensitive_features,
        classes=classes,
    )
