"""Offline data loaders: bundled UCI Adult, local Fashion-MNIST IDX files, UTKFace folders.

Nothing here downloads anything.
"""

from ._adult import load_adult, make_adult_preprocessor
from ._fashion_mnist import load_fashion_mnist, read_idx
from ._utkface import load_utkface

__all__ = [
    "load_adult",
    "make_adult_preprocessor",
    "load_fashion_mnist",
    "read_idx",
    "load_utkface",
]
