"""The registry of the bundled and local datasets, and :func:`load_dataset`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._adult import _adult_split
from ._digits import _digits_split
from ._fashion_mnist import _fashion_mnist_split
from ._split import MODELS, DataOptionError, DatasetDefaults, DatasetSplit
from ._utkface import UTKFACE_ATTRIBUTES, _utkface_split

__all__ = ["DATASETS", "DatasetInfo", "check_sensitive", "load_dataset"]

#: Options of :func:`load_dataset` that only some datasets take (:attr:`DatasetInfo.options`).
SPECIFIC_OPTIONS = ("target", "data_path", "image_size", "minority_classes", "minority_fraction")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset offers: its groups, labels, models, options and defaults.

    Attributes
    ----------
    name : str
        The key in :data:`DATASETS`.
    description : str
        Where the data come from, in a few words.
    defaults : DatasetDefaults
        The settings it is audited with.
    sensitive_choices : tuple of str
        Its group columns (``("class",)``: the classes are the groups).
    targets : tuple of str
        Its choosable labels; empty for a fixed label.
    models : tuple of str
        The models its inputs fit (tabular data: ``("mlp",)``).
    options : tuple of str
        The options among :data:`SPECIFIC_OPTIONS` it takes.
    """

    name: str
    description: str
    defaults: DatasetDefaults
    sensitive_choices: tuple[str, ...]
    loader: Callable[..., DatasetSplit]
    targets: tuple[str, ...] = ()
    models: tuple[str, ...] = MODELS
    options: tuple[str, ...] = ()

    @property
    def class_groups(self) -> bool:
        """Whether the groups are the classes."""
        return self.sensitive_choices == ("class",)

    @property
    def tabular(self) -> bool:
        """Whether the inputs are table rows (an MLP only), not images."""
        return self.models == ("mlp",)


#: Every dataset :func:`load_dataset` loads, by name. The defaults of the audit were chosen by
#: the measurements in docs/benchmark.md ("The audit demo").
DATASETS: Mapping[str, DatasetInfo] = MappingProxyType({
    "adult": DatasetInfo(
        "adult", "bundled UCI Adult, the original train/test split",
        DatasetDefaults(rates=(0.5, 0.9, 0.98), sensitive=("race", "sex")),
        sensitive_choices=("race", "sex"), loader=_adult_split, models=("mlp",)),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "Fashion-MNIST IDX files (Debian package dataset-fashion-mnist, or "
        "data_path), classes as groups",
        DatasetDefaults(rates=(0.5, 0.7, 0.8), sensitive=("class",), max_epochs=8, lr=0.01,
                        momentum=0.9, batch_size=128, hidden_units=(128, 64), n_train=10_000),
        sensitive_choices=("class",), loader=_fashion_mnist_split,
        options=("data_path", "minority_classes", "minority_fraction")),
    "digits": DatasetInfo(
        "digits", "scikit-learn's 8x8 digits, a stratified 70/30 split, classes as groups",
        DatasetDefaults(rates=(0.5, 0.8, 0.9), sensitive=("class",), max_epochs=20, lr=0.1,
                        batch_size=64),
        sensitive_choices=("class",), loader=_digits_split),
    # the paper's Fig. 1 / Fig. 5 setting: ethnicity as label and group, a ResNet18
    "utkface": DatasetInfo(
        "utkface", "the user's folder of UTKFace images (data_path)",
        DatasetDefaults(rates=(0.5, 0.8, 0.9), sensitive=("race",), target="race",
                        model="resnet18", lr=0.01, momentum=0.9, batch_size=128),
        sensitive_choices=UTKFACE_ATTRIBUTES, loader=_utkface_split,
        targets=UTKFACE_ATTRIBUTES, options=("target", "data_path", "image_size")),
})


def _takers(option: str) -> str:
    names = [name for name, info in DATASETS.items() if option in info.options]
    return " and ".join(names)


def check_sensitive(sensitive: str | Sequence[str], choices: Sequence[str] | None = None,
                    where: str = "") -> tuple[str, ...]:
    """``sensitive`` as a tuple of distinct column names, each among ``choices`` if given.

    Parameters
    ----------
    sensitive : str or sequence of str
        Group column(s).
    choices : sequence of str, optional
        The allowed columns.
    where : str, default=""
        Appended to the message after the choices (``" for the adult dataset"``).

    Returns
    -------
    tuple of str

    Raises
    ------
    DataOptionError
        For an empty list, a column named twice or one not among ``choices``.

    Examples
    --------
    >>> check_sensitive(["race", "sex"], ("race", "sex"))
    ('race', 'sex')
    """
    names = (sensitive,) if isinstance(sensitive, str) else tuple(sensitive)
    if not names:
        raise DataOptionError("sensitive", "must name at least one column")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataOptionError("sensitive", f"names {', '.join(map(str, repeated))} twice")
    if choices is not None:
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise DataOptionError(
                "sensitive", f"must be among {', '.join(choices)}{where}; got "
                             f"{', '.join(map(str, unknown))}")
    return names


@validate_params(
    {
        "name": [StrOptions(set(DATASETS))],
        "model": [StrOptions(set(MODELS)), None],
        "sensitive": [str, "array-like", None],
        "target": [str, None],
        "n_train": [Interval(Integral, 2, None, closed="left"), None],
        "data_path": [str, os.PathLike, None],
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "minority_classes": ["array-like", None],
        "minority_fraction": [Interval(Real, 0, 1, closed="right"), None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def load_dataset(
    name: str,
    *,
    model: str | None = None,
    sensitive: str | Sequence[str] | None = None,
    target: str | None = None,
    n_train: int | None = None,
    data_path: str | os.PathLike | None = None,
    image_size: int | None = None,
    minority_classes: Sequence[int | str] | None = None,
    minority_fraction: float | None = None,
    random_state: int = 0,
) -> DatasetSplit:
    """A dataset of :data:`DATASETS` as a train/test split with groups, shaped for a model.

    Every option is checked against the dataset's :class:`DatasetInfo` before a file is read.

    Parameters
    ----------
    name : {"adult", "fashion_mnist", "digits", "utkface"}
        ``adult``: bundled UCI Adult, original train/test split, preprocessed
        (:func:`make_adult_preprocessor` fitted on the training rows). ``fashion_mnist``:
        local IDX files (``data_path``, or the Debian package's folder), classes as groups.
        ``digits``: sklearn's 8×8 digits, a stratified 70/30 split, classes as groups.
        ``utkface``: the user's folder of UTKFace images (``data_path``), a random 75/25
        split stratified by label × group.
    model : {"mlp", "cnn", "resnet18"}, optional
        Shapes the inputs: flat features for ``mlp``, ``(n, C, H, W)`` images otherwise.
        None: the dataset's default model.
    sensitive : str or sequence of str, optional
        Group columns among the dataset's ``sensitive_choices`` (Adult: ``race``, ``sex``;
        UTKFace: ``race``, ``gender``, ``age_bin``; ``class`` for the others). Several give
        intersectional groups. None: the dataset's default.
    target : str, optional
        UTKFace: the label among ``race``, ``gender``, ``age_bin`` (default ``race``, the
        paper's setting). The other datasets have a fixed label.
    n_train : int >= 2, optional
        Subsample the training set to this many rows (Adult: at random; the others:
        stratified by class where possible). None keeps every row.
    data_path : str or path-like, optional
        Fashion-MNIST: the folder of the IDX files (None: the Debian package's); UTKFace
        (required): the folder of the images.
    image_size : int >= 8, optional
        UTKFace: images are resized to ``image_size × image_size`` (default 32).
    minority_classes, minority_fraction : optional
        Fashion-MNIST: make these classes rare in the training set, keeping this fraction
        in (0, 1] of their images.
    random_state : int >= 0, default=0
        Seed of the subsampling and of the digits and UTKFace splits.

    Returns
    -------
    DatasetSplit

    Raises
    ------
    DataOptionError
        An option the dataset does not take or a value it does not offer (naming the option),
        or a ``data_path`` that does not hold the data.

    Examples
    --------
    >>> from fairprune_sk.datasets import load_dataset
    >>> data = load_dataset("digits", n_train=300)
    >>> data.X_train.shape, data.sensitive, data.defaults.rates
    ((300, 64), ('class',), (0.5, 0.8, 0.9))
    >>> from fairprune_sk.datasets import DataOptionError
    >>> try:
    ...     load_dataset("adult", sensitive="age")
    ... except DataOptionError as error:
    ...     print(f"{error.parameter}: {error.detail}")
    sensitive: must be among race, sex for the adult dataset; got age
    """
    info = DATASETS[name]
    given = {"target": target, "data_path": data_path, "image_size": image_size,
             "minority_classes": minority_classes, "minority_fraction": minority_fraction}
    for option, value in given.items():
        if value is not None and option not in info.options:
            takers = _takers(option)
            raise DataOptionError(option, f"applies to the {takers} dataset"
                                          f"{'s' if ' and ' in takers else ''} only; "
                                          f"{name} does not take it")
    model = info.defaults.model if model is None else model
    if model not in info.models:
        raise DataOptionError("model", f"must be {' or '.join(info.models)} for the {name} "
                                       f"dataset (tabular data: cnn and resnet18 need images); "
                                       f"got {model}")
    where = f" for the {name} dataset" + (" (its groups are its classes)"
                                          if info.class_groups else "")
    sensitive = check_sensitive(info.defaults.sensitive if sensitive is None else sensitive,
                                info.sensitive_choices, where)
    if (minority_classes is None) != (minority_fraction is None):
        missing = "minority_fraction" if minority_fraction is None else "minority_classes"
        other = "minority_classes" if missing == "minority_fraction" else "minority_fraction"
        raise DataOptionError(missing, f"must be given with {other}")
    arguments: dict[str, Any] = {"n_train": n_train, "random_state": random_state,
                                 "defaults": info.defaults}
    if not info.tabular:
        arguments["images"] = model != "mlp"
    if not info.class_groups:
        arguments["sensitive"] = sensitive
    if "target" in info.options:
        target = info.defaults.target if target is None else target
        if target not in info.targets:
            raise DataOptionError("target", f"must be among {', '.join(info.targets)} for the "
                                            f"{name} dataset; got {target}")
        arguments["target"] = target
    if "image_size" in info.options:
        arguments["image_size"] = 32 if image_size is None else image_size
    for option in ("data_path", "minority_classes", "minority_fraction"):
        if option in info.options:
            arguments[option] = given[option]
    return info.loader(**arguments)
