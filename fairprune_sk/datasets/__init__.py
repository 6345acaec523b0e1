"""Datasets: bundled UCI Adult, local Fashion-MNIST IDX files, sklearn's digits, UTKFace folders.

Nothing here downloads anything. :func:`load_dataset` gives any of :data:`DATASETS` as one
:class:`DatasetSplit` (inputs, labels and groups for training and testing, the fitted
preprocessing and the dataset's :class:`DatasetDefaults`); the raw loaders
(:func:`load_adult`, :func:`load_fashion_mnist`, :func:`load_utkface`) give the files as they are.
"""

from ._adult import load_adult, make_adult_preprocessor
from ._fashion_mnist import load_fashion_mnist, read_idx
from ._registry import DATASETS, DatasetInfo, check_sensitive, load_dataset
from ._split import MODELS, DataOptionError, DatasetDefaults, DatasetSplit
from ._utkface import load_utkface

__all__ = [
    "DATASETS",
    "MODELS",
    "DataOptionError",
    "DatasetDefaults",
    "DatasetInfo",
    "DatasetSplit",
    "check_sensitive",
    "load_adult",
    "load_dataset",
    "load_fashion_mnist",
    "load_utkface",
    "make_adult_preprocessor",
    "read_idx",
]
