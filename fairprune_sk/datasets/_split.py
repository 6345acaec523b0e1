"""The one container of every dataset: a train/test split, its groups and its defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MODELS", "DataOptionError", "DatasetDefaults", "DatasetSplit"]

#: Model names: :class:`~fairprune_sk.models.MLP`, :class:`~fairprune_sk.models.SmallCNN`,
#: :class:`~fairprune_sk.models.ResNet18`.
MODELS: tuple[str, ...] = ("mlp", "cnn", "resnet18")


class DataOptionError(ValueError):
    """A dataset option that does not fit the dataset or the data.

    Parameters
    ----------
    parameter : str
        The option's name as a keyword of :func:`~fairprune_sk.datasets.load_dataset`
        (``"sensitive"``, ``"target"``, ``"data_path"``, ...); the command line names the
        flag of the same name (``--sensitive``).
    detail : str
        What is wrong, written to follow the option's name.

    Examples
    --------
    >>> error = DataOptionError("sensitive", "must be among race, sex; got 'age'")
    >>> str(error), error.parameter
    ("sensitive must be among race, sex; got 'age'", 'sensitive')
    """

    __module__ = "fairprune_sk.datasets"

    def __init__(self, parameter: str, detail: str) -> None:
        self.parameter = parameter
        self.detail = detail
        super().__init__(f"{parameter} {detail}")


@dataclass(frozen=True)
class DatasetDefaults:
    """The settings a dataset is audited with when the caller leaves them unset.

    Attributes
    ----------
    rates : tuple of float
        Pruning rates of the audit.
    sensitive : tuple of str
        Group columns (several give intersectional groups).
    model : {"mlp", "cnn", "resnet18"}
        The net.
    max_epochs, lr, momentum, batch_size
        Dense training (SGD).
    hidden_units : tuple of int
        Hidden layer sizes of the MLP.
    n_train : int or None
        Training rows kept (a subsample); None keeps them all.
    target : str or None
        The label column, for datasets whose label can be chosen.
    """

    rates: tuple[float, ...]
    sensitive: tuple[str, ...]
    model: str = "mlp"
    max_epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.0
    batch_size: int = 256
    hidden_units: tuple[int, ...] = (64, 64)
    n_train: int | None = None
    target: str | None = None

    def net_params(
        self,
        model: str | None = None,
        *,
        max_epochs: int | None = None,
        lr: float | None = None,
        momentum: float | None = None,
        batch_size: int | None = None,
        hidden_units: Sequence[int] | None = None,
        channels: Sequence[int] = (16, 32),
        width: int = 16,
        fine_tune_epochs: int = 0,
        pruning_method: str = "global_magnitude",
        device: str = "cpu",
        verbose: int = 0,
    ) -> dict[str, Any]:
        """``PrunableNetClassifier`` parameters of a model name, these defaults filling gaps.

        Parameters
        ----------
        model : {"mlp", "cnn", "resnet18"}, optional
            :class:`~fairprune_sk.models.MLP` (``hidden_units``),
            :class:`~fairprune_sk.models.SmallCNN` (``channels``) or
            :class:`~fairprune_sk.models.ResNet18` (``width``; 64 is the standard width).
            None: :attr:`model`.
        max_epochs, lr, momentum, batch_size, hidden_units : optional
            None: the attribute of the same name.
        channels : sequence of int, default=(16, 32)
            SmallCNN channels.
        width : int, default=16
            ResNet18 width.
        fine_tune_epochs : int, default=0
            Epochs after pruning, masks held.
        pruning_method : str, default="global_magnitude"
            One of :data:`fairprune_sk.pruning.PRUNING_METHODS`.
        device : str, default="cpu"
            skorch device.
        verbose : int, default=0
            skorch's per-epoch log.

        Returns
        -------
        dict
            ``module``, ``module__*``, ``max_epochs``, ``lr``, ``batch_size``,
            ``optimizer__momentum``, ``fine_tune_epochs``, ``pruning_method``, ``device``,
            ``verbose``.

        Examples
        --------
        >>> from fairprune_sk.datasets import DATASETS
        >>> params = DATASETS["digits"].defaults.net_params(hidden_units=(8,))
        >>> params["module"].__name__, params["module__hidden_units"], params["max_epochs"]
        ('MLP', (8,), 20)
        """
        from ..models import MLP, ResNet18, SmallCNN

        model = self.model if model is None else model
        if model not in MODELS:
            raise DataOptionError("model", f"must be one of {', '.join(MODELS)}; got {model!r}")
        params: dict[str, Any] = {
            "max_epochs": self.max_epochs if max_epochs is None else int(max_epochs),
            "lr": self.lr if lr is None else float(lr),
            "batch_size": self.batch_size if batch_size is None else int(batch_size),
            "optimizer__momentum": self.momentum if momentum is None else float(momentum),
            "fine_tune_epochs": int(fine_tune_epochs),
            "pruning_method": pruning_method,
            "device": device,
            "verbose": verbose,
        }
        if model == "mlp":
            units = self.hidden_units if hidden_units is None else hidden_units
            params.update(module=MLP, module__hidden_units=tuple(int(h) for h in units))
        elif model == "cnn":
            params.update(module=SmallCNN, module__channels=tuple(int(c) for c in channels))
        else:
            params.update(module=ResNet18, module__width=int(width))
        return params


@dataclass(frozen=True, eq=False)
class DatasetSplit:
    """A train/test split with its groups, the preprocessing it went through and its defaults.

    Every loader of :mod:`fairprune_sk.datasets` that gives a split returns one
    (:func:`~fairprune_sk.datasets.load_dataset`, :func:`~fairprune_sk.datasets.load_table`).

    Attributes
    ----------
    name : str
        The dataset (a key of :data:`~fairprune_sk.datasets.DATASETS`, or ``"table"``).
    X_train, X_test : ndarray
        float32 inputs: ``(n, n_features)`` for tabular data and MLPs, ``(n, C, H, W)`` images
        for the image models.
    y_train, y_test : ndarray of shape (n,)
        Class labels.
    groups_train, groups_test : pandas.DataFrame
        Sensitive features, one column per attribute (several: intersectional groups).
    classes : ndarray
        The sorted labels of ``y_train``.
    defaults : DatasetDefaults
        The settings this dataset is audited with.
    preprocessor : object or None
        The fitted transformer that made ``X_*`` from the raw columns (tabular data), or None.
    notes : tuple of str
        What a user should be told (class groups, subsampling, the split).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    groups_train: pd.DataFrame
    X_test: np.ndarray
    y_test: np.ndarray
    groups_test: pd.DataFrame
    defaults: DatasetDefaults
    preprocessor: Any = None
    notes: tuple[str, ...] = ()
    classes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", np.unique(np.asarray(self.y_train)))

    @property
    def sensitive(self) -> tuple[str, ...]:
        """The group columns."""
        return tuple(str(column) for column in self.groups_train.columns)

    @property
    def grouping(self) -> str:
        """The group columns as one name: ``"race & sex"``."""
        return " & ".join(self.sensitive)

    def describe(self) -> str:
        """One line: sizes, input shape, classes and groups."""
        n_groups = len(self.groups_train.drop_duplicates())
        return (f"{self.name}: {len(self.y_train)} training and {len(self.y_test)} test samples, "
                f"input shape {self.X_train.shape[1:]}, {len(self.classes)} classes, "
                f"{n_groups} groups by {self.grouping}")


def _stratified_split(y: np.ndarray, groups: pd.DataFrame, test_size: float,
                      random_state: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Train and test row indices of a random split, stratified by label × group where every
    combination has at least two rows, else by label, else not at all; and which it was."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    n_test = max(1, int(round(test_size * n)))
    strata = pd.Series(np.asarray(y).astype(str)).str.cat(
        groups.astype(str).agg("|".join, axis=1).to_numpy(), sep="|")
    labels, how = None, "none"
    for candidate, name in ((strata, "label × group"), (pd.Series(np.asarray(y)), "label")):
        counts = candidate.value_counts()
        if counts.min() >= 2 and n_test >= len(counts) and n - n_test >= len(counts):
            labels, how = candidate, name
            break
    train, test = train_test_split(np.arange(n), test_size=n_test, random_state=random_state,
                                   stratify=labels)
    return train, test, how


def _subsample(rows: np.ndarray, y: np.ndarray, n: int, random_state: int) -> np.ndarray:
    """``n`` of ``rows``, stratified by their labels ``y[rows]`` where possible."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(y)[rows]
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 and n >= len(counts) else None
    kept, _ = train_test_split(rows, train_size=n, random_state=random_state, stratify=stratify)
    return kept
