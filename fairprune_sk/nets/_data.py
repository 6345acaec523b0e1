"""The data side of a prunable net: validation, per-sample metadata, and fast batching.

``fit`` validates X, y and ``sample_weight`` before they reach skorch; per-sample metadata
(sample weights, and the groups and reference outputs of
:class:`~fairprune_sk.FairConstrainedNet`) travel with X in a dict, so skorch's batching and
validation split slice them with X. :class:`InMemoryBatches` produces those batches by tensor
indexing instead of skorch's ``DataLoader``, which indexes through sklearn's ``_safe_indexing``
once per batch and dominated the epoch of a small tabular net.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, validate_data
from skorch.dataset import Dataset
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, Subset

__all__ = ["INPUT_KEY", "SAMPLE_WEIGHT_KEY", "InMemoryBatches", "NetDataMixin", "as_numpy"]

#: Key of the input array when a net's training data travels as a dict with per-sample metadata.
INPUT_KEY = "X"
SAMPLE_WEIGHT_KEY = "sample_weight"

#: ``DataLoader`` options :class:`InMemoryBatches` reproduces; any other one takes skorch's path.
_BATCH_OPTIONS = {"batch_size", "shuffle", "drop_last"}


def _as_tensor(value: Any) -> torch.Tensor | None:
    """``value`` as a tensor sharing its memory, or None where the ``DataLoader`` path must stay
    (not a numeric array: ``default_convert`` leaves those as they are).

    The tensor is only read (batches are gathered with ``index_select``, a copy), so a read-only
    array (pandas' group codes are) is shared as it is; one with negative strides is copied.
    """
    if isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc":
        return None
    if any(stride < 0 for stride in value.strides):
        value = np.ascontiguousarray(value)
    if value.flags.writeable:
        return torch.from_numpy(value)
    with warnings.catch_warnings():  # "not writable": the tensor is never written to
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(value)


def as_numpy(value: Any) -> np.ndarray:
    """A batch's tensor (detached, on the CPU; a CPU tensor's memory is shared) or array as an
    ndarray."""
    if isinstance(value, torch.Tensor):
        if value.requires_grad or not value.is_cpu:
            value = value.detach().cpu()
        return value.numpy()
    return np.asarray(value)


def _random_seed() -> int:
    """One draw from torch's global RNG, as ``DataLoader`` and ``RandomSampler`` draw seeds."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


class InMemoryBatches:
    """The batches of in-memory arrays, indexed as tensors, with the ``DataLoader``'s RNG draws.

    Yields what skorch's ``DataLoader(dataset, batch_size=None, sampler=BatchSampler(...))``
    yields for its ``Dataset`` (``(X_batch, y_batch)``, X a tensor or a dict, a
    ``torch.Tensor([0])`` placeholder when y is None), but gathers each batch with one
    ``index_select`` per array. Every epoch draws from torch's global RNG exactly what the
    ``DataLoader`` draws (its base seed, then ``RandomSampler``'s seed for ``randperm``), so the
    batches, and every fit with a fixed ``random_state``, are the same as through it. Batches
    are copies: a module writing into its input does not change the data.

    In a dict, the per-sample metadata (every key but ``"X"``: sample weights, groups, the
    dense net's outputs) is gathered by numpy indexing and yielded as ndarrays on the CPU, with
    the same values the ``DataLoader`` gives as tensors: the loss and the dual bookkeeping read
    them with numpy, and a torch op per key and batch cost more than that bookkeeping.

    Parameters
    ----------
    X : Tensor or dict of str to Tensor or ndarray
        Arrays of the same length (n_samples, ...).
    y : Tensor or None
    batch_size : int
    shuffle : bool
        A new random order every epoch (``RandomSampler``); else the stored order.
    drop_last : bool
        Leave out the last batch if it is smaller than ``batch_size``.
    indices : Tensor or None
        Rows of a ``Subset``: the batches are drawn over these rows only.
    """

    def __init__(
        self,
        X: torch.Tensor | dict[str, torch.Tensor],
        y: torch.Tensor | None,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        indices: torch.Tensor | None = None,
    ) -> None:
        if isinstance(X, dict):  # the input as a tensor, the metadata as ndarrays
            X = {key: value if key == INPUT_KEY else as_numpy(value) for key, value in X.items()}
        self.X, self.y = X, y
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.indices = indices
        first = next(iter(X.values())) if isinstance(X, dict) else X
        self.n_samples = len(first) if indices is None else len(indices)

    @classmethod
    def from_dataset(cls, dataset: Any, **options: Any) -> InMemoryBatches | None:
        """Batches of skorch's own in-memory ``Dataset`` (or a ``Subset`` of it); None if the
        dataset is anything else (then skorch's ``DataLoader`` path is taken)."""
        indices = None
        if isinstance(dataset, Subset):
            indices = torch.as_tensor(np.asarray(dataset.indices, dtype=np.int64))
            dataset = dataset.dataset
        if type(dataset) is not Dataset:  # a subclass may transform its items
            return None
        X = dataset.X
        if isinstance(X, Mapping):
            X = {key: _as_tensor(value) for key, value in X.items()}
            if not X or any(value is None for value in X.values()):
                return None
        else:
            X = _as_tensor(X)
        y = None if dataset.y is None else _as_tensor(dataset.y)
        if X is None or (dataset.y is not None and y is None):
            return None
        return cls(X, y, indices=indices, **options)

    def __len__(self) -> int:
        if self.drop_last:
            return self.n_samples // self.batch_size
        return -(-self.n_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        _random_seed()  # the DataLoader's base seed (for workers), drawn on every iteration
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(_random_seed())
            order = torch.randperm(self.n_samples, generator=generator)
        else:
            order = torch.arange(self.n_samples)
        if self.indices is not None:
            order = self.indices[order]
        stop = len(self) * self.batch_size if self.drop_last else self.n_samples
        placeholder = torch.Tensor([0])  # skorch's Dataset gives this for y=None
        order_array = order.numpy()  # a view: numpy slices index the metadata
        for start in range(0, stop, self.batch_size):
            rows = order[start:start + self.batch_size]
            if isinstance(self.X, dict):
                rows_array = order_array[start:start + self.batch_size]
                Xi = {
                    key: value.index_select(0, rows) if key == INPUT_KEY else value[rows_array]
                    for key, value in self.X.items()
                }
            else:
                Xi = self.X.index_select(0, rows)
            yield Xi, placeholder if self.y is None else self.y.index_select(0, rows)


class NetDataMixin:
    """Validation of the training data and the batching of a prunable skorch net."""

    def get_iterator(self, dataset: Any, training: bool = False) -> Any:
        """Batches gathered by tensor indexing (:class:`InMemoryBatches`), not sample by sample.

        For skorch's own in-memory ``Dataset`` (or a ``Subset`` of it, as ``ValidSplit``
        makes) and the default ``DataLoader`` with no options but ``batch_size``, ``shuffle``
        and ``drop_last``, the batches and the RNG draws are those of the ``DataLoader``, at a
        fraction of the cost. Other loader options on such a dataset get a ``DataLoader`` fed
        whole index lists (a ``BatchSampler``); custom datasets, iterators, samplers or collate
        functions take skorch's path unchanged.
        """
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        custom = {"sampler", "batch_sampler", "collate_fn"} & set(kwargs)
        if iterator is not DataLoader or type(base) is not Dataset or custom:
            return super().get_iterator(dataset, training=training)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        batch_size = len(dataset) if batch_size == -1 else batch_size
        shuffle = bool(kwargs.pop("shuffle", False))
        drop_last = bool(kwargs.pop("drop_last", False))
        if not kwargs:
            batches = InMemoryBatches.from_dataset(
                dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last
            )
            if batches is not None:
                return batches
        order = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        sampler = BatchSampler(order, batch_size, drop_last=drop_last)
        return DataLoader(dataset, batch_size=None, sampler=sampler, **kwargs)

    def check_data(self, X: Any, y: Any) -> None:
        """Data are validated by ``fit`` / ``partial_fit`` before they reach skorch."""

    def infer(self, x: Any, **fit_params: Any) -> torch.Tensor:
        """Forward a batch; per-sample metadata riding along in a dict batch is left out."""
        if isinstance(x, Mapping) and INPUT_KEY in x:
            x = x[INPUT_KEY]
        return super().infer(x, **fit_params)

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        return validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True)

    def _validate_training_data(
        self, X: Any, y: Any, *, reset: bool, classes: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate X and y; return float32 X, encoded y and the classes (nothing is stored).

        ``classes`` is ``partial_fit``'s argument: read before any check on y, so a first batch
        holding one class only trains when ``classes`` names them all.
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, allow_nd=True)
        check_classification_targets(y)
        classes = self._training_classes(y, reset=reset, given=classes)
        from ..metrics import encode_labels

        return X, encode_labels(y, classes), classes

    def _training_classes(self, y: np.ndarray, *, reset: bool, given: Any) -> np.ndarray:
        """The classes to encode y with: ``classes_`` once fitted, else the ``classes``
        parameter (in its own order, sorted or not), else ``partial_fit``'s ``classes``
        (sorted, as sklearn's ``partial_fit``), else the labels of y."""
        if given is not None:
            given = np.unique(np.asarray(given))
        if not reset:
            classes = np.asarray(self.classes_)
        elif self.classes is not None:
            classes = np.asarray(self.classes)
            if len(np.unique(classes)) != len(classes):
                raise ValueError(f"classes has duplicate labels: {classes.tolist()}")
        elif given is not None:
            classes = given
        else:
            classes = np.unique(y)
        if given is not None and not np.array_equal(np.unique(classes), given):
            raise ValueError(
                f"classes={given.tolist()} differs from the classes of this net "
                f"{classes.tolist()}; pass the same classes (or none)"
            )
        if len(classes) < 2:
            raise ValueError(
                "Classifier can't train when only one class is present; "
                f"y has the single class {classes.tolist()}"
            )
        return classes

    def _check_sample_weight(self, sample_weight: Any, X: np.ndarray) -> np.ndarray | None:
        """Normalise weights to mean 1 so the loss scale (and lr) does not depend on them."""
        if sample_weight is None:
            return None
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        total = weight.sum()
        if total <= 0:
            raise ValueError(
                "sample_weight sums to zero; at least one sample needs a positive weight"
            )
        if np.all(weight == weight[0]):
            return None  # uniform weights: exactly the unweighted loss
        return (weight * (len(weight) / total)).astype(np.float32)

    def _training_input(self, X: np.ndarray, **per_sample: np.ndarray | None) -> Any:
        """X as skorch will batch it: a dict when per-sample metadata must travel with it."""
        extras = {key: value for key, value in per_sample.items() if value is not None}
        if not extras:
            return X
        return {INPUT_KEY: X, **extras}
