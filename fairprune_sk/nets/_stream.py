"""A torch ``Dataset`` or ``DataLoader`` as the data of a net, one batch at a time.

:class:`NetStream` wraps the user's data so that skorch's loop (``get_iterator`` →
``DataLoader`` → ``train_step``) batches it without ever holding every input in memory:

- a ``Dataset`` is batched by skorch's iterator (``batch_size``, ``iterator_train__shuffle``,
  ``iterator_*__collate_fn`` and the other ``iterator_*`` parameters apply, as for skorch's own
  ``NeuralNetClassifier`` fitting a ``Dataset``); each item travels with its position, so arrays
  aligned with the dataset (``y``, ``sample_weight``, groups, θ*'s per-sample outputs) are
  gathered per batch;
- a ``DataLoader`` is iterated as it is (its batch size, order, ``collate_fn`` and workers);
  aligned arrays follow its order, so it must not shuffle when any are given.

Items are what :mod:`fairprune_sk.metrics` reads (``(x, y)``, ``x`` alone, or a dict with the
input under ``"X"``, the label under ``"y"`` and any other fields). Floating inputs are cast to
float32, as arrays are. Labels are the ``y`` given, or the items' labels encoded batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
from torch.utils.data.dataloader import default_collate

from ..metrics import encode_labels
from ..metrics._stream import LABEL_FIELD, _as_array, _known_length, _parse, _shuffles
from ._data import INPUT_KEY

__all__ = ["NO_LABELS", "SHUFFLING_LOADER", "NetStream", "stream_of"]

NO_LABELS = (
    "y is None and the items of X carry no label: pass y= (one label per item, in the "
    "dataset's order), or make the items (x, y) pairs or dicts with the label under "
    f"{LABEL_FIELD!r}"
)
SHUFFLING_LOADER = (
    "X is a DataLoader that shuffles, so {what} cannot be matched with its samples: pass its "
    "Dataset instead (the net batches and shuffles it itself: batch_size, "
    "iterator_train__shuffle), or a DataLoader with shuffle=False"
)


@contextmanager
def _no_rng_draws() -> Iterator[None]:
    """Fork torch's global RNG: a pass over a ``DataLoader`` draws a seed from it, which would
    change the shuffling and the initialisation of the training that follows."""
    with torch.random.fork_rng(devices=[]):
        yield


class NetStream(Dataset):
    """The user's ``Dataset`` / ``DataLoader`` with what the net adds to its batches.

    Parameters
    ----------
    source : torch.utils.data.Dataset or DataLoader
        An ``IterableDataset`` is read through ``DataLoader(source, batch_size)``.
    classes : ndarray or None
        Labels of the net's outputs, to encode the items' labels with; None: batches carry no
        labels (prediction).
    y_index : ndarray of shape (n_samples,) or None
        Encoded labels aligned with the data; None: the items' labels.
    arrays : dict of str to ndarray, optional
        Per-sample arrays aligned with the data, added to every batch under their key (the
        batch's input is then a dict with the input under ``"X"``).
    batch_size : int, default=128
        Batch size of an ``IterableDataset`` and of the passes made outside skorch's loop.
    collate : callable or None, default=None
        The ``collate_fn`` of those passes (torch's ``default_collate`` if None).

    Attributes
    ----------
    item_fields : dict of str to ndarray
        Values of the fields read by :meth:`read`, for the caller.
    """

    def __init__(
        self,
        source: Any,
        *,
        classes: np.ndarray | None = None,
        y_index: np.ndarray | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
        batch_size: int = 128,
        collate: Any = None,
    ) -> None:
        if isinstance(source, IterableDataset):
            source = DataLoader(source, batch_size=batch_size, collate_fn=collate)
        self.source = source
        self.classes = classes
        self.y_index = y_index
        self.arrays = dict(arrays or {})
        self.batch_size = batch_size
        self.collate = collate or default_collate
        self.item_fields: dict[str, np.ndarray] = {}
        self._shape: tuple[int, ...] | None = None
        self.n_samples = _known_length(source)
        self._check_aligned("y", y_index)
        for key, value in self.arrays.items():
            self._check_aligned(key, value)

    # ------------------------------------------------------------------------------------------
    @property
    def is_loader(self) -> bool:
        """Whether the source is a ``DataLoader`` (iterated as it is)."""
        return isinstance(self.source, DataLoader)

    @property
    def shuffles(self) -> bool:
        """Whether the source is a ``DataLoader`` that shuffles (no order across passes)."""
        return self.is_loader and _shuffles(self.source)

    def _check_aligned(self, what: str, values: np.ndarray | None) -> None:
        if values is None:
            return
        if self.shuffles:
            raise ValueError(SHUFFLING_LOADER.format(what=f"per-sample {what}"))
        if self.n_samples is not None and len(values) != self.n_samples:
            raise ValueError(f"{what} has {len(values)} values but X holds {self.n_samples} items")
        if self.n_samples is None:
            self.n_samples = len(values)

    def with_arrays(self, **arrays: np.ndarray | None) -> NetStream:
        """A stream like this one with more aligned per-sample arrays (None values are left
        out)."""
        given = {key: np.asarray(value) for key, value in arrays.items() if value is not None}
        stream = NetStream(self.source, classes=self.classes, y_index=self.y_index,
                           arrays={**self.arrays, **given}, batch_size=self.batch_size,
                           collate=self.collate)
        stream._shape, stream.n_samples = self._shape, self.n_samples
        return stream

    def __len__(self) -> int:
        if self.n_samples is None:
            raise TypeError(
                "X does not say how many items it holds (an IterableDataset, or a DataLoader "
                "with drop_last=True); pass a Dataset with __len__"
            )
        return self.n_samples

    def __getitem__(self, i: int) -> tuple[int, Any]:
        """The item at position ``i`` and its position (a ``Dataset`` source only)."""
        return i, self.source[i]

    # ------------------------------------------------------------------------------------------
    # batches
    # ------------------------------------------------------------------------------------------
    def batch(self, raw: Any, positions: np.ndarray | None = None, offset: int = 0) -> tuple:
        """``(X, y, positions)`` of a collated batch of the source's items.

        ``X`` is the input tensor, or a dict with the input under ``"X"`` and the aligned
        arrays' values of the batch; ``y`` the encoded labels (None for prediction).
        ``positions`` are the items' positions (``offset`` onwards when not given).
        """
        parsed = _parse(raw)
        x = parsed.x if isinstance(parsed.x, torch.Tensor) else torch.as_tensor(
            np.asarray(parsed.x))
        if x.is_floating_point():
            x = x.to(torch.float32)
        if positions is None:
            positions = np.arange(offset, offset + len(x))
        y = None
        if self.y_index is not None:
            y = torch.as_tensor(self.y_index[positions])
        elif self.classes is not None:
            if parsed.y is None:
                raise ValueError(NO_LABELS)
            y = torch.as_tensor(encode_labels(_as_array(parsed.y).ravel(), self.classes))
        extras = {key: torch.as_tensor(value[positions]) for key, value in self.arrays.items()}
        return ({INPUT_KEY: x, **extras} if extras else x), y, positions

    def iterator(self, dataset: Dataset, loader: Any, kwargs: dict[str, Any]) -> Any:
        """What skorch's ``get_iterator`` returns for ``dataset`` (this stream, or a ``Subset``
        of it from skorch's ``train_split``): ``loader(dataset, **kwargs)`` with a
        ``collate_fn`` that builds the net's batches, or the user's ``DataLoader`` as it is."""
        if self.is_loader:
            return _LoaderBatches(self)
        collate = kwargs.pop("collate_fn", None) or default_collate
        return loader(dataset, collate_fn=_Collate(self, collate), **kwargs)

    def for_each_batch(self, fn: Callable[[Any, Any, np.ndarray], None]) -> None:
        """Call ``fn(X, y, positions)`` on every batch, in the data's order (a pass outside
        skorch's loop); torch's global RNG is left as it was."""
        with _no_rng_draws():
            for X, y, positions in self._ordered_batches():
                fn(X, y, positions)

    def _ordered_batches(self) -> Iterator[tuple]:
        if self.is_loader:
            offset = 0
            for raw in self.source:
                batch = self.batch(raw, offset=offset)
                offset += len(batch[2])
                yield batch
            return
        loader = DataLoader(self, batch_size=self.batch_size, shuffle=False,
                            collate_fn=_Collate(self, self.collate, positions=True))
        yield from loader

    # ------------------------------------------------------------------------------------------
    # one pass over the items' labels and fields
    # ------------------------------------------------------------------------------------------
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input (from the first batch), read once."""
        if self._shape is None:
            with _no_rng_draws():
                for raw in self.source if self.is_loader else DataLoader(
                        self.source, batch_size=1, collate_fn=self.collate):
                    self._shape = tuple(_parse(raw).x.shape[1:])
                    break
            if self._shape is None:
                raise ValueError("X yields no samples")
        return self._shape

    def read(self, *, labels: bool,
             fields: tuple[str, ...] = ()) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """One pass over the items: their labels (if ``labels``) and the values of ``fields``
        of dict items, in the data's order; torch's global RNG is left as it was."""
        found: list[np.ndarray] = []
        values: dict[str, list[np.ndarray]] = {name: [] for name in fields}
        raw_batches = self.source if self.is_loader else DataLoader(
            self.source, batch_size=self.batch_size, shuffle=False, collate_fn=self.collate)
        n_read = 0
        with _no_rng_draws():
            for raw in raw_batches:
                parsed = _parse(raw)
                n_batch = len(parsed.x)
                if labels:
                    if parsed.y is None:
                        raise ValueError(NO_LABELS)
                    found.append(_as_array(parsed.y).ravel())
                for name in fields:
                    if name not in parsed.fields:
                        raise ValueError(
                            f"sensitive_features names the field {name!r}, but the items of X "
                            f"have no such field (fields: {sorted(map(str, parsed.fields))}); "
                            "items must be dicts holding it"
                        )
                    values[name].append(_as_array(parsed.fields[name]).reshape(n_batch))
                n_read += n_batch
        if n_read == 0:
            raise ValueError("X yields no samples")
        if self.n_samples is None:
            self.n_samples = n_read
        return (np.concatenate(found) if labels else None,
                {name: np.concatenate(parts) for name, parts in values.items()})

    @staticmethod
    def field_frame(values: Mapping[str, np.ndarray]) -> Any:
        """Field values as sensitive features: a Series for one field, else a DataFrame."""
        if len(values) == 1:
            (name, column), = values.items()
            return pd.Series(column, name=name)
        return pd.DataFrame(dict(values))


class _Collate:
    """The ``collate_fn`` of a ``Dataset`` stream: the user's collate on the items, then the
    net's batch (a class rather than a closure, so that loader workers can pickle it)."""

    def __init__(self, stream: NetStream, collate: Any, *, positions: bool = False) -> None:
        self.stream, self.collate, self.positions = stream, collate, positions

    def __call__(self, items: list[tuple[int, Any]]) -> tuple:
        positions = np.fromiter((i for i, _ in items), dtype=np.int64, count=len(items))
        X, y, positions = self.stream.batch(self.collate([item for _, item in items]), positions)
        return (X, y, positions) if self.positions else (X, y)


class _LoaderBatches:
    """The net's batches of a ``DataLoader`` stream, in the loader's order, once per iteration."""

    def __init__(self, stream: NetStream) -> None:
        self.stream = stream

    def __len__(self) -> int:
        return len(self.stream.source)

    def __iter__(self) -> Iterator[tuple]:
        offset = 0
        for raw in self.stream.source:
            X, y, positions = self.stream.batch(raw, offset=offset)
            offset += len(positions)
            yield X, y


def stream_of(dataset: Any) -> NetStream | None:
    """The :class:`NetStream` behind ``dataset`` (itself, or under skorch's ``Subset``s)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset if isinstance(dataset, NetStream) else None
