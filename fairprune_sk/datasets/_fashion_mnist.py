"""Fashion-MNIST from a local folder of IDX files (never downloaded)."""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

from ._split import DataOptionError, DatasetDefaults, DatasetSplit

__all__ = [
    "load_fashion_mnist",
    "read_idx",
    "FASHION_MNIST_CLASSES",
    "DEFAULT_FASHION_MNIST_PATH",
]

#: Where the Debian package ``dataset-fashion-mnist`` installs the files.
DEFAULT_FASHION_MNIST_PATH = "/usr/share/datasets/fashion-mnist/"

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type code -> big-endian numpy dtype
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_DESCR = """\
Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 28x28 grayscale images of 10 clothing classes,
60,000 training and 10,000 test images, MIT licence. Read from local IDX files (for instance the
Debian package dataset-fashion-mnist); nothing is downloaded.

The "groups" of this data set (groups_train, groups_test) are the CLASSES themselves, i.e. the
class name of each image. They are not demographic groups: they serve to study how pruning
affects under-represented classes (see minority_classes / minority_fraction), not people.
"""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (as used by MNIST and Fashion-MNIST), gzipped or not.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a
    big-endian uint32, then the data in big-endian order. Gzip compression is detected from
    the content, not the file name.

    Parameters
    ----------
    path : str or path-like
        The file to read.

    Returns
    -------
    array : ndarray
        Of the shape stored in the header, in native byte order.

    Raises
    ------
    ValueError
        If the file is not a valid IDX file: bad magic number, unknown type code, truncated
        header or data, or trailing bytes.

    Examples
    --------
    A 2 x 3 uint8 array: the bytes ``00 00 08 02``, the two dimensions, then the data.

    >>> import struct
    >>> import tempfile
    >>> from pathlib import Path
    >>> from fairprune_sk.datasets import read_idx
    >>> path = Path(tempfile.mkdtemp()) / "tiny-idx2-ubyte"
    >>> header = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 2, 3)  # uint8, 2-D, 2 x 3
    >>> _ = path.write_bytes(header + bytes(range(6)))
    >>> read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    >>> path.unlink()
    >>> path.parent.rmdir()
    """
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip stream ({exc}).") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes, header needs 4).")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number must start with two zero bytes, "
            f"got {raw[:4].hex()})."
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{code:02x}; expected one of "
            f"{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}."
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions.")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions declared).")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    got = len(raw) - header_end
    if got != expected:
        kind = "truncated" if got < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX data {kind}: header shape {dims} of {dtype.name} needs {expected} "
            f"bytes, file has {got}."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _class_indices(values, name: str) -> list[int]:
    if isinstance(values, str | Integral):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, str) and v in FASHION_MNIST_CLASSES:
            out.append(FASHION_MNIST_CLASSES.index(v))
        elif isinstance(v, Integral) and not isinstance(v, bool) and 0 <= v < 10:
            out.append(int(v))
        else:
            raise ValueError(
                f"{name} must hold class indices 0-9 or class names {FASHION_MNIST_CLASSES}, "
                f"got {v!r}."
            )
    return out


def _stratified_subsample(y: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    """Indices of about ``n`` rows of ``y`` keeping class proportions (sorted)."""
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n / len(y)
    take = np.floor(quota).astype(int)
    remainder = n - take.sum()
    if remainder > 0:  # largest remainders get one more
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:remainder]] += 1
    keep = [
        rng.choice(np.flatnonzero(y == c), size=k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(keep))


def load_fashion_mnist(
    path: str | os.PathLike | None = None,
    *,
    classes: Sequence[int | str] | None = None,
    minority_classes: Sequence[int | str] | None = None,
    minority_fraction: float | None = None,
    n_train: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
) -> Bunch:
    """Load Fashion-MNIST from a local folder of IDX files.

    Nothing is downloaded. On Debian/Ubuntu, ``apt-get install -y dataset-fashion-mnist``
    puts the files in ``/usr/share/datasets/fashion-mnist/``, the default ``path``.

    The groups returned (``groups_train``, ``groups_test``) are the **classes** of the
    images (their class names), not demographic groups: with ``minority_classes`` they let
    you study how pruning affects under-represented classes.

    Parameters
    ----------
    path : str or path-like, default=None
        Folder holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (uncompressed
        files without ``.gz`` are accepted too). None means
        ``/usr/share/datasets/fashion-mnist/``.
    classes : sequence of int or str, default=None
        Keep only these classes (indices 0-9 or names), in train and test. Labels keep
        their original values 0-9 and ``target_names`` stays the list of 10 names.
    minority_classes : sequence of int or str, default=None
        Classes to make rare in the **training** set only; requires ``minority_fraction``.
    minority_fraction : float in (0, 1], default=None
        Fraction of each minority class's training images to keep (at least one image).
    n_train : int, default=None
        Subsample the training set (after the minority subsampling) to ``n_train`` images,
        stratified by class.
    random_state : int, RandomState instance or None, default=0
        Seed of the subsampling.

    Returns
    -------
    data : sklearn.utils.Bunch
        With keys ``X_train``, ``X_test`` (float32 of shape (n, 1, 28, 28) in [0, 1], the
        uint8 pixels divided by 255),
        ``y_train``, ``y_test`` (int64 class indices), ``groups_train``, ``groups_test``
        (object arrays of class names), ``target_names`` (the 10 class names), ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If the folder or one of the four files is missing.
    ValueError
        For invalid arguments, or corrupt files.

    Examples
    --------
    Not run as a doctest: the files are not bundled with the package (install
    ``dataset-fashion-mnist`` or pass ``path=``), so continuous integration may lack them.

    >>> data = load_fashion_mnist(minority_classes=["Shirt"], minority_fraction=0.05,
    ...                           n_train=2000)  # doctest: +SKIP
    >>> data.X_train.shape[1:], len(data.X_test)  # doctest: +SKIP
    ((1, 28, 28), 10000)
    """
    folder = Path(DEFAULT_FASHION_MNIST_PATH if path is None else path)
    if minority_classes is not None and minority_fraction is None:
        raise ValueError("minority_fraction is required when minority_classes is given.")
    if minority_fraction is not None:
        if minority_classes is None:
            raise ValueError("minority_classes is required when minority_fraction is given.")
        if (
            isinstance(minority_fraction, bool)
            or not isinstance(minority_fraction, Real)
            or not 0.0 < minority_fraction <= 1.0
        ):
            raise ValueError(
                f"minority_fraction must be a float in (0, 1], got {minority_fraction!r}."
            )
    if n_train is not None and (
        isinstance(n_train, bool) or not isinstance(n_train, Integral) or n_train < 1
    ):
        raise ValueError(f"n_train must be a positive integer or None, got {n_train!r}.")
    keep_classes = None if classes is None else _class_indices(classes, "classes")
    minority = (
        [] if minority_classes is None else _class_indices(minority_classes, "minority_classes")
    )
    rng = check_random_state(random_state)

    files = {key: _find_file(folder, stem) for key, stem in _FILES.items()}
    missing = [_FILES[key] + ".gz" for key, f in files.items() if f is None]
    if missing:
        where = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)}"
        raise FileNotFoundError(
            f"Fashion-MNIST not found: the folder {str(folder)!r} {where}. Install the Debian "
            "package with `apt-get install -y dataset-fashion-mnist` (files in "
            f"{DEFAULT_FASHION_MNIST_PATH}), or pass path= to a folder holding the four IDX "
            f"files {', '.join(f + '.gz' for f in _FILES.values())}."
        )

    arrays = {key: read_idx(f) for key, f in files.items()}
    splits = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{folder}: {split} images of shape {images.shape} and labels of shape "
                f"{labels.shape} do not match (expected (n, 28, 28) and (n,))."
            )
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"{folder}: {split} labels must be in 0-9.")
        idx = np.arange(len(labels))
        if keep_classes is not None:
            idx = idx[np.isin(labels, keep_classes)]
        if split == "train" and minority:
            keep = ~np.isin(labels[idx], minority)
            for c in minority:
                members = idx[labels[idx] == c]
                if len(members):
                    k = max(1, round(minority_fraction * len(members)))
                    chosen = rng.choice(len(members), size=k, replace=False)
                    keep[np.searchsorted(idx, members[chosen])] = True
            idx = idx[keep]
        if split == "train" and n_train is not None and n_train < len(idx):
            idx = idx[_stratified_subsample(labels[idx], n_train, rng)]
        X = images[idx].astype(np.float32)[:, None, :, :] / np.float32(255.0)
        y = labels[idx]
        splits[split] = (X, y, np.asarray(FASHION_MNIST_CLASSES, dtype=object)[y])

    return Bunch(
        X_train=splits["train"][0],
        X_test=splits["test"][0],
        y_train=splits["train"][1],
        y_test=splits["test"][1],
        groups_train=splits["train"][2],
        groups_test=splits["test"][2],
        target_names=list(FASHION_MNIST_CLASSES),
        DESCR=_DESCR,
    )


#: The note of every dataset whose groups are its classes.
CLASS_GROUPS_NOTE = (
    "note: the groups of {name} are its CLASSES (one group per class label), not demographic "
    "groups; they show how compression treats (rare) classes, not people"
)


def _fashion_mnist_split(*, images: bool, n_train: int | None, random_state: int,
                         data_path: str | os.PathLike | None,
                         minority_classes: Sequence[int | str] | None,
                         minority_fraction: float | None,
                         defaults: DatasetDefaults) -> DatasetSplit:
    """Fashion-MNIST as a :class:`DatasetSplit`, groups by class; flat unless ``images``."""
    try:
        data = load_fashion_mnist(data_path, minority_classes=minority_classes,
                                  minority_fraction=minority_fraction, n_train=n_train,
                                  random_state=random_state)
    except FileNotFoundError:
        folder = Path(DEFAULT_FASHION_MNIST_PATH if data_path is None else data_path)
        found = "does not exist" if not folder.is_dir() else "lacks some of them"
        raise DataOptionError(
            "data_path",
            f"must be a folder holding the four Fashion-MNIST IDX files "
            f"({', '.join(stem + '.gz' for stem in _FILES.values())}); {str(folder)!r} {found}. "
            f"The default folder is the Debian package's: apt-get install -y "
            f"dataset-fashion-mnist puts them in {DEFAULT_FASHION_MNIST_PATH}") from None
    notes = [CLASS_GROUPS_NOTE.format(name="Fashion-MNIST")]
    if minority_classes is not None:
        notes.append(f"minority classes {list(minority_classes)} keep {minority_fraction:g} of "
                     "their training images")
    if n_train is not None and len(data.y_train) == n_train:
        notes.append(f"subsampled the Fashion-MNIST training set to {n_train} images "
                     f"(stratified by class, seed {random_state}); the test set is "
                     f"the full {len(data.y_test)} images")
    X_train, X_test = data.X_train, data.X_test
    if not images:
        X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    return DatasetSplit(
        "fashion_mnist", X_train, data.y_train, pd.DataFrame({"class": data.groups_train}),
        X_test, data.y_test, pd.DataFrame({"class": data.groups_test}), defaults=defaults,
        notes=tuple(notes),
    )
