"""Benchmark data: a train/test split with sensitive groups for every benchmark dataset.

:func:`load_benchmark_data` gives bundled Adult, the user's Fashion-MNIST IDX files or UTKFace
images (:func:`load_utkface_split`), or sklearn's digits, shaped for the model (flat features
for ``mlp``, ``(n, C, H, W)`` images otherwise), as one :class:`BenchmarkData`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_choice
from .configs import MODELS

__all__ = [
    "DATASETS",
    "DEFAULT_MODELS",
    "BenchmarkData",
    "load_benchmark_data",
    "load_utkface_split",
]

DATASETS = ("adult", "fashion_mnist", "digits", "utkface")
ADULT_SENSITIVE = ("race", "sex")
#: UTKFace attributes usable as the label (``target``) and as groups (``sensitive``).
UTKFACE_ATTRIBUTES = ("race", "gender", "age_bin")
#: Model used when none is named: the paper's ResNet for face images, an MLP otherwise.
DEFAULT_MODELS = {"adult": "mlp", "fashion_mnist": "mlp", "digits": "mlp", "utkface": "resnet18"}
#: One line for a missing, empty or unreadable UTKFace folder.
UTKFACE_FOLDER_HELP = (
    "--data-path must be a folder holding UTKFace face images (searched recursively) named "
    "[age]_[gender]_[race]_[date&time].jpg, e.g. 25_1_2_20170116174525125.jpg (gender 0/1, "
    "race 0-4; the aligned-and-cropped *.jpg.chip.jpg names work too); {problem}"
)

CLASS_GROUPS_NOTE = (
    "note: the groups of {name} are its CLASSES (one group per class label), not demographic "
    "groups; they show how pruning treats (rare) classes, not people"
)


@dataclass
class BenchmarkData:
    """A train/test split with sensitive features.

    Attributes
    ----------
    name : str
        Dataset name (one of :data:`DATASETS`).
    X_train, X_test : ndarray
        float32, ``(n, n_features)`` for tabular data and MLPs, ``(n, 1, H, W)`` for images.
    y_train, y_test : ndarray of shape (n,)
        Class labels.
    A_train, A_test : pandas.DataFrame
        Sensitive features (one column per attribute).
    sensitive : str
        Name of the grouping (``"race"``, ``"race & sex"``, ``"class"``, ...).
    notes : list of str
        What the user should be told (class groups, subsampling).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    A_train: pd.DataFrame
    X_test: np.ndarray
    y_test: np.ndarray
    A_test: pd.DataFrame
    sensitive: str
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line: sizes, features and groups."""
        n_groups = len(self.A_train.drop_duplicates())
        return (f"{self.name}: {len(self.y_train)} training and {len(self.y_test)} test samples, "
                f"input shape {self.X_train.shape[1:]}, {len(np.unique(self.y_train))} classes, "
                f"{n_groups} groups by {self.sensitive}")



def _check_n_train(n_train: int | None) -> None:
    if n_train is not None and (isinstance(n_train, bool) or not isinstance(n_train, int)
                                or n_train < 2):
        raise ValueError(f"n_train must be an int >= 2 or None; got {n_train!r}")


def load_benchmark_data(
    dataset: str,
    *,
    model: str | None = None,
    sensitive: Sequence[str] = ("race",),
    n_train: int | None = None,
    minority_classes: Sequence[int | str] | None = None,
    minority_fraction: float | None = None,
    data_path: str | Path | None = None,
    random_state: int = 0,
    target: str | None = None,
    image_size: int = 32,
) -> BenchmarkData:
    """A benchmark split: bundled Adult, local Fashion-MNIST or UTKFace, or sklearn's digits.

    Parameters
    ----------
    dataset : {"adult", "fashion_mnist", "digits", "utkface"}
        ``adult``: bundled UCI Adult, original train/test split, groups by ``sensitive``.
        ``fashion_mnist``: local IDX files (``data_path``, or the Debian package's folder);
        groups are the classes. ``digits``: sklearn's 8×8 digits, a stratified 70/30 split;
        groups are the digit classes (fast, for tests). ``utkface``: the user's folder of
        UTKFace images (``data_path``), see :func:`load_utkface_split`.
    model : {"mlp", "cnn", "resnet18"}, optional
        Shapes the inputs: flat features for ``mlp``, ``(n, C, H, W)`` images otherwise
        (image models need an image dataset). None: :data:`DEFAULT_MODELS` (``resnet18`` for
        UTKFace, ``mlp`` otherwise).
    sensitive : sequence of str, default=("race",)
        Adult: among ``race``, ``sex``; UTKFace: among ``race``, ``gender``, ``age_bin``.
        Several give intersectional groups. Ignored for the class-grouped data sets.
    n_train : int, optional
        Subsample the training set to this many rows (Adult: at random; Fashion-MNIST and
        digits: stratified by class). Recorded in ``notes``.
    minority_classes, minority_fraction : optional
        Fashion-MNIST only: make these classes rare in the training set (keep this fraction).
    data_path : str or Path, optional
        Fashion-MNIST folder; None: the loader's default.
    random_state : int, default=0
        Seed of the subsampling and of the digits and UTKFace splits.
    target : {"race", "gender", "age_bin"}, optional
        UTKFace only: the label (default ``race``, the paper's setting).
    image_size : int, default=32
        UTKFace only: images are resized to ``image_size × image_size``.

    Returns
    -------
    BenchmarkData
    """
    check_choice(dataset, "dataset", DATASETS)
    model = DEFAULT_MODELS[dataset] if model is None else model
    check_choice(model, "model", MODELS)
    _check_n_train(n_train)
    images = model != "mlp"
    if (minority_classes is not None or minority_fraction is not None) and \
            dataset != "fashion_mnist":
        raise ValueError("minority_classes / minority_fraction apply to fashion_mnist only")
    if dataset == "utkface":
        return load_utkface_split(data_path, target="race" if target is None else target,
                                  sensitive=sensitive, model=model, image_size=image_size,
                                  n_train=n_train, random_state=random_state)
    if target is not None:
        raise ValueError(f"target applies to utkface only; {dataset} has a fixed label "
                         f"(got target={target!r})")
    if dataset == "adult":
        return _adult(sensitive, n_train, images, random_state)
    if dataset == "fashion_mnist":
        return _fashion_mnist(n_train, minority_classes, minority_fraction, data_path, images,
                              random_state)
    return _digits(n_train, images, random_state)


def _adult(sensitive: Sequence[str], n_train: int | None, images: bool,
           random_state: int) -> BenchmarkData:
    if images:
        raise ValueError("adult is tabular: use model='mlp' (cnn and resnet18 need images)")
    sensitive = list(dict.fromkeys(sensitive))
    if not sensitive or any(s not in ADULT_SENSITIVE for s in sensitive):
        raise ValueError(f"sensitive must be among {ADULT_SENSITIVE} for adult; got {sensitive}")
    from ..audit import load_adult_split

    split = load_adult_split(sensitive, n_train=n_train, random_state=random_state)
    notes = []
    if n_train is not None and len(split.y_train) == n_train:
        notes.append(f"subsampled the Adult training set to {n_train} random rows "
                     f"(--n-train, seed {random_state})")
    return BenchmarkData("adult", split.X_train, split.y_train, split.A_train, split.X_test,
                         split.y_test, split.A_test, " & ".join(sensitive), notes)


def _fashion_mnist(n_train: int | None, minority_classes: Any, minority_fraction: Any,
                   data_path: Any, images: bool, random_state: int) -> BenchmarkData:
    from ..datasets import load_fashion_mnist

    data = load_fashion_mnist(data_path, minority_classes=minority_classes,
                              minority_fraction=minority_fraction, n_train=n_train,
                              random_state=random_state)
    notes = [CLASS_GROUPS_NOTE.format(name="Fashion-MNIST")]
    if minority_classes is not None:
        notes.append(f"minority classes {list(minority_classes)} keep {minority_fraction:g} of "
                     "their training images")
    if n_train is not None and len(data.y_train) == n_train:
        notes.append(f"subsampled the Fashion-MNIST training set to {n_train} images "
                     f"(stratified by class, --n-train, seed {random_state}); the test set is "
                     f"the full {len(data.y_test)} images")
    X_train, X_test = data.X_train, data.X_test
    if not images:
        X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    return BenchmarkData(
        "fashion_mnist", X_train, data.y_train, pd.DataFrame({"class": data.groups_train}),
        X_test, data.y_test, pd.DataFrame({"class": data.groups_test}), "class", notes,
    )


def _digits(n_train: int | None, images: bool, random_state: int) -> BenchmarkData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.3, stratify=digits.target, random_state=random_state)
    notes = [CLASS_GROUPS_NOTE.format(name="digits")]
    if n_train is not None and n_train < len(y_train):
        X_train, _, y_train, _ = train_test_split(X_train, y_train, train_size=n_train,
                                                  stratify=y_train, random_state=random_state)
        notes.append(f"subsampled the digits training set to {n_train} images (stratified)")
    if images:
        X_train, X_test = X_train.reshape(-1, 1, 8, 8), X_test.reshape(-1, 1, 8, 8)
    return BenchmarkData(
        "digits", X_train, y_train, pd.DataFrame({"class": y_train}), X_test, y_test,
        pd.DataFrame({"class": y_test}), "class", notes,
    )


def load_utkface_split(
    folder: str | Path | None,
    *,
    target: str = "race",
    sensitive: Sequence[str] = ("race",),
    model: str = "resnet18",
    image_size: int = 32,
    n_train: int | None = None,
    test_size: float = 0.25,
    random_state: int = 0,
) -> BenchmarkData:
    """A train/test split of the user's UTKFace images, groups by UTKFace attributes.

    The images are read with :func:`fairprune_sk.datasets.load_utkface` (RGB, resized), then
    split at random (``test_size``), stratified by label × group where every combination has
    at least two images, else by label, else not at all.

    Parameters
    ----------
    folder : str or Path
        Folder of images named ``[age]_[gender]_[race]_[date&time].jpg`` (searched
        recursively). Missing, not a folder, or without such images: ``FileNotFoundError`` /
        ``ValueError`` with one line (:data:`UTKFACE_FOLDER_HELP`).
    target : {"race", "gender", "age_bin"}, default="race"
        The label. The paper (Tran et al. 2022, Fig. 1 and 5) uses ethnicity as both label
        and group.
    sensitive : sequence of {"race", "gender", "age_bin"}, default=("race",)
        Group attributes; several give intersectional groups.
    model : {"mlp", "cnn", "resnet18"}, default="resnet18"
        ``mlp`` flattens the images to ``3 · image_size²`` features.
    image_size : int >= 8, default=32
        Side of the resized images.
    n_train : int, optional
        Subsample the training part to this many images (stratified by label when possible).
    test_size : float in (0, 1), default=0.25
        Fraction of the images held out for testing.
    random_state : int, default=0
        Seed of the split and the subsample.

    Returns
    -------
    BenchmarkData
        ``X`` float32 ``(n, 3, image_size, image_size)`` in [0, 1] (flat for ``mlp``), ``y``
        int labels (``race``: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others; ``gender``: 0
        Male, 1 Female; ``age_bin``: 0-19, 20-39, 40-59, 60+), ``A`` the readable group labels.
    """
    check_choice(target, "target", UTKFACE_ATTRIBUTES)
    sensitive = list(dict.fromkeys([sensitive] if isinstance(sensitive, str) else sensitive))
    if not sensitive or any(s not in UTKFACE_ATTRIBUTES for s in sensitive):
        raise ValueError(f"sensitive must be among {UTKFACE_ATTRIBUTES} for utkface; "
                         f"got {sensitive}")
    check_choice(model, "model", MODELS)
    _check_n_train(n_train)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8; got {image_size!r}")
    if not (isinstance(test_size, float) and 0.0 < test_size < 1.0):
        raise ValueError(f"test_size must be a float in (0, 1); got {test_size!r}")
    if folder is None:
        raise ValueError(UTKFACE_FOLDER_HELP.format(problem="none was given"))
    root = Path(folder)
    if not root.is_dir():
        problem = "it does not exist" if not root.exists() else "it is not a folder"
        raise FileNotFoundError(UTKFACE_FOLDER_HELP.format(problem=f"{str(root)!r}: {problem}"))
    from sklearn.model_selection import train_test_split

    from ..datasets import load_utkface

    try:
        data = load_utkface(root, size=image_size, target=target)
    except ValueError as exc:  # arguments are checked above: no (readable) image
        raise ValueError(UTKFACE_FOLDER_HELP.format(
            problem=f"{str(root)!r} holds none that can be read ({exc})")) from None
    y = np.asarray(data.y)
    groups = data.attributes[sensitive].astype(str).reset_index(drop=True)
    if len(y) < 4:
        raise ValueError(UTKFACE_FOLDER_HELP.format(
            problem=f"{str(root)!r} holds {len(y)} image(s); a train/test split needs at least 4"))
    indices = np.arange(len(y))
    strata = pd.Series(y.astype(str)).str.cat(groups.agg("|".join, axis=1), sep="|")
    stratified = "label × group"
    n_test = max(1, int(round(test_size * len(y))))
    for labels, name in ((strata, "label × group"), (pd.Series(y), "label"), (None, "none")):
        counts = None if labels is None else labels.value_counts()
        if labels is None or (counts.min() >= 2 and n_test >= len(counts)
                              and len(y) - n_test >= len(counts)):
            stratified = name
            train, test = train_test_split(indices, test_size=n_test, random_state=random_state,
                                           stratify=None if labels is None else labels)
            break
    notes = [f"UTKFace: {len(y)} images from {root}, resized to {image_size}x{image_size}; "
             f"label {target}, groups by {' & '.join(sensitive)}; random "
             f"{1 - test_size:.0%}/{test_size:.0%} train/test split (stratified by "
             f"{stratified}, seed {random_state})"]
    if target in sensitive:
        notes.append(f"the label {target} is also the group (as in the paper's Fig. 1 and 5): "
                     "a group's accuracy is that class's recall")
    if n_train is not None and n_train < len(train):
        labels = y[train]
        _, counts = np.unique(labels, return_counts=True)
        stratify = labels if counts.min() >= 2 and n_train >= len(counts) else None
        train, _ = train_test_split(train, train_size=n_train, random_state=random_state,
                                    stratify=stratify)
        notes.append(f"subsampled the UTKFace training set to {n_train} images (--n-train, "
                     f"seed {random_state})")
    X = data.X if model != "mlp" else data.X.reshape(len(data.X), -1)
    return BenchmarkData(
        "utkface", X[train], y[train], groups.iloc[train].reset_index(drop=True),
        X[test], y[test], groups.iloc[test].reset_index(drop=True), " & ".join(sensitive),
        notes,
    )
