"""Datasets: bundled UCI Adult, local Fashion-MNIST IDX files, sklearn's digits, UTKFace folders,
the user's tables.

Nothing here downloads anything. :func:`load_dataset` gives any of :data:`DATASETS`, and
:func:`load_table` the user's CSV or Parquet file, as one :class:`DatasetSplit` (inputs, labels
and groups for training and testing, the fitted preprocessing and the dataset's
:class:`DatasetDefaults`); the raw loaders
(:func:`load_adult`, :func:`load_fashion_mnist`, :func:`load_utkface`) give the files as they are.
"""

from ._adult import load_adult, make_adult_preprocessor
from ._fashion_mnist import load_fashion_mnist, read_idx
from ._registry import DATASETS, DatasetInfo, check_sensitive, load_dataset
from ._split import MODELS, DataOptionError, DatasetDefaults, DatasetSplit
from ._table import (
    PREDICTION_SUFFIXES,
    TABLE_SUFFIXES,
    Predictions,
    load_predictions,
    load_table,
    read_table,
)
from ._utkface import load_utkface

__all__ = [
    "DATASETS",
    "MODELS",
    "PREDICTION_SUFFIXES",
    "TABLE_SUFFIXES",
    "DataOptionError",
    "DatasetDefaults",
    "DatasetInfo",
    "DatasetSplit",
    "Predictions",
    "check_sensitive",
    "load_adult",
    "load_dataset",
    "load_fashion_mnist",
    "load_predictions",
    "load_table",
    "load_utkface",
    "make_adult_preprocessor",
    "read_idx",
    "read_table",
]
