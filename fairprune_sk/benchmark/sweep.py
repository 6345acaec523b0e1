"""The benchmark sweep: datasets × models × pruning rates × methods × seeds.

:func:`load_benchmark_data` gives a train/test split with sensitive groups, :func:`net_params_for`
the net of a model name, and :func:`run_sweep` runs every method × rate × seed through
:func:`fairprune_sk.benchmark.runner.run_methods` (one dense reference per seed, independent
runs in ``joblib.Parallel``), then writes

- ``results.csv``: one row per dataset × model × method × rate × seed × (test) group, with the
  columns of :class:`~fairprune_sk.ExcessRiskFrame` (``count``, ``loss_dense``,
  ``loss_pruned``, ``excess_risk`` R(a), ``accuracy_dense``, ``accuracy_pruned``,
  ``accuracy_drop``, ``excess_accuracy_gap`` ψ_g, ``flip_rate``; "dense" is the common dense
  net θ*, "pruned" the method's final model), ``accuracy_own_dense`` (the dense net the method
  itself pruned), then the run-level ``fairness_violation`` ξ, ``max_excess_accuracy_gap``, gaps,
  worst-group accuracy, overall accuracies and flip rate, the same on the training data
  (``train_*``), sparsity and wall time (:data:`RESULT_COLUMNS`);
- ``summary.csv``: per method × rate, the mean over seeds with a 95 % Student-t interval
  (``<metric>_mean``, ``<metric>_std``, ``<metric>_ci_low``, ``<metric>_ci_high``, ``n_seeds``);
- ``group_accuracy.png`` (the paper's Fig. 1) and ``methods.png`` (its Fig. 5);
- ``meta.json``: the configuration and the total wall time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from .methods import GROUP_COLUMNS, SUMMARY_COLUMNS, MethodResult
from .runner import run_methods
from .summary import flat_summary, format_summary, summarize

__all__ = [
    "DATASETS",
    "MODELS",
    "RESULT_COLUMNS",
    "RUN_COLUMNS",
    "BenchmarkData",
    "SweepResult",
    "load_benchmark_data",
    "load_utkface_split",
    "net_params_for",
    "results_table",
    "run_sweep",
]

DATASETS = ("adult", "fashion_mnist", "digits", "utkface")
MODELS = ("mlp", "cnn", "resnet18")
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

#: Run-level columns of ``results.csv`` (repeated on every group row of the run): the keys of
#: :data:`~fairprune_sk.benchmark.methods.SUMMARY_COLUMNS`, those that share a name with a per-group
#: column (``accuracy_dense``, ``flip_rate``) and ``accuracy`` prefixed ``overall_``.
RUN_COLUMNS = {
    key: (f"overall_{key}" if key in (*GROUP_COLUMNS, "accuracy") else key)
    for key in SUMMARY_COLUMNS if key not in ("method", "rate", "seed")
}
#: Columns of ``results.csv``, in order (one row per run × test group).
RESULT_COLUMNS = (
    "dataset",
    "model",
    "sensitive",
    "method",
    "rate",
    "seed",
    "group",
    *GROUP_COLUMNS,
    "accuracy_own_dense",
    *RUN_COLUMNS.values(),
)

#: Training defaults per dataset (used where the caller leaves a setting at None).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "adult": {"max_epochs": 10, "batch_size": 256, "lr": 0.05},
    "fashion_mnist": {"max_epochs": 8, "batch_size": 128, "lr": 0.01},
    "digits": {"max_epochs": 20, "batch_size": 64, "lr": 0.1},
    "utkface": {"max_epochs": 10, "batch_size": 128, "lr": 0.01},
}

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


def _check_choice(value: Any, name: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}; got {value!r}")
    return value


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
    _check_choice(dataset, "dataset", DATASETS)
    model = DEFAULT_MODELS[dataset] if model is None else model
    _check_choice(model, "model", MODELS)
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
    from .audit import load_adult_split

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
    _check_choice(target, "target", UTKFACE_ATTRIBUTES)
    sensitive = list(dict.fromkeys([sensitive] if isinstance(sensitive, str) else sensitive))
    if not sensitive or any(s not in UTKFACE_ATTRIBUTES for s in sensitive):
        raise ValueError(f"sensitive must be among {UTKFACE_ATTRIBUTES} for utkface; "
                         f"got {sensitive}")
    _check_choice(model, "model", MODELS)
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


def net_params_for(
    model: str,
    *,
    dataset: str = "adult",
    max_epochs: int | None = None,
    fine_tune_epochs: int = 2,
    lr: float | None = None,
    batch_size: int | None = None,
    momentum: float = 0.9,
    pruning_method: str = "global_magnitude",
    hidden_units: Sequence[int] = (64, 64),
    channels: Sequence[int] = (16, 32),
    width: int = 16,
    dual_lr: float | str = "auto",
    dual_update: str | int = "auto",
    constraint_target: str = "group_loss",
    tolerance: float | str = "auto",
    device: str = "cpu",
) -> dict[str, Any]:
    """``net_params`` of :func:`~fairprune_sk.benchmark.runner.run_methods` for a model name.

    Parameters
    ----------
    model : {"mlp", "cnn", "resnet18"}
        :class:`~fairprune_sk.models.MLP` (``hidden_units``),
        :class:`~fairprune_sk.models.SmallCNN` (``channels``) or
        :class:`~fairprune_sk.models.ResNet18` (``width``; 64 is the standard width).
    dataset : str, default="adult"
        Picks the defaults of ``max_epochs``, ``lr`` and ``batch_size`` left at None.
    fine_tune_epochs : int, default=2
        Epochs after pruning, masks held.
    momentum : float, default=0.9
        SGD momentum.
    pruning_method : str, default="global_magnitude"
        One of :data:`fairprune_sk.pruning.PRUNING_METHODS`.
    dual_lr, dual_update, tolerance : float, int or "auto", optional
        Of every :class:`~fairprune_sk.constrained.FairConstrainedNet` method (``fair_*``,
        ``ceag``, ``ceag_heldout``); "auto" resolves per constraint target (see
        docs/mitigation.md).
    constraint_target : str, default="group_loss"
        What the ``fair_*`` methods constrain: ``group_loss`` (the paper's equal group losses),
        ``excess_risk`` or ``accuracy_gap``. ``ceag`` always constrains ``accuracy_gap``.
    device : str, default="cpu"
        skorch device.

    Returns
    -------
    dict
    """
    from ..models import MLP, ResNet18, SmallCNN
    from ..pruning import validate_method

    _check_choice(model, "model", MODELS)
    validate_method(pruning_method)
    defaults = DATASET_DEFAULTS.get(dataset, DATASET_DEFAULTS["adult"])
    params: dict[str, Any] = {
        "max_epochs": defaults["max_epochs"] if max_epochs is None else int(max_epochs),
        "lr": defaults["lr"] if lr is None else float(lr),
        "batch_size": defaults["batch_size"] if batch_size is None else int(batch_size),
        "optimizer__momentum": float(momentum),
        "fine_tune_epochs": int(fine_tune_epochs),
        "pruning_method": pruning_method,
        "dual_lr": dual_lr if isinstance(dual_lr, str) else float(dual_lr),
        "dual_update": dual_update,
        "constraint_target": constraint_target,
        "tolerance": tolerance if isinstance(tolerance, str) else float(tolerance),
        "device": device,
        "verbose": 0,
    }
    if model == "mlp":
        params.update(module=MLP, module__hidden_units=tuple(int(h) for h in hidden_units))
    elif model == "cnn":
        params.update(module=SmallCNN, module__channels=tuple(int(c) for c in channels))
    else:
        params.update(module=ResNet18, module__width=int(width))
    return params


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
def _group_label(label: Any) -> str:
    if isinstance(label, tuple):
        return " & ".join(str(part) for part in label)
    return str(label)


def results_table(results: Sequence[MethodResult], *, dataset: str, model: str,
                  sensitive: str) -> pd.DataFrame:
    """One row per run × test group (the schema of ``results.csv``, :data:`RESULT_COLUMNS`)."""
    frames = []
    for result in results:
        frame = result.by_group_test.copy()
        frame.insert(0, "group", [_group_label(g) for g in frame.index])
        own = result.own_dense_accuracy
        frame["accuracy_own_dense"] = np.nan if own is None else own.to_numpy()
        for key, column in RUN_COLUMNS.items():
            frame[column] = result.summary[key]
        frame["dataset"], frame["model"], frame["sensitive"] = dataset, model, sensitive
        frame["method"], frame["rate"], frame["seed"] = result.method, result.rate, result.seed
        frames.append(frame.reset_index(drop=True))
    if not frames:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(RESULT_COLUMNS)]


@dataclass
class SweepResult:
    """What :func:`run_sweep` produced.

    Attributes
    ----------
    table : pandas.DataFrame
        ``results.csv``: one row per run × test group.
    runs : pandas.DataFrame
        One row per run (:func:`~fairprune_sk.benchmark.runner.compare_methods`' schema).
    summary : pandas.DataFrame
        Mean, std and 95 % t-interval over seeds per method × rate
        (:func:`~fairprune_sk.benchmark.summary.summarize`).
    files : list of Path
        Files written (empty when ``out`` is None).
    seconds : float
        Wall time of the sweep.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path]
    seconds: float
    runs: pd.DataFrame | None = None


class _Progress:
    """One line per finished run: a text bar, the run, its result and the elapsed time."""

    def __init__(self, stream: TextIO, width: int = 20) -> None:
        self.stream = stream
        self.width = width
        self.start = time.perf_counter()

    def __call__(self, result: MethodResult, done: int, total: int) -> None:
        filled = round(self.width * done / total)
        bar = "#" * filled + "-" * (self.width - filled)
        s = result.summary
        digits = len(str(total))
        print(f"[{bar}] {done:>{digits}}/{total} {result.method:<11} rate={result.rate:<5g} "
              f"seed={result.seed}  acc={s['accuracy']:.4f} "
              f"xi={s['fairness_violation']:.4f} max_psi={s['max_excess_accuracy_gap']:.4f}  "
              f"{result.seconds:6.1f} s  "
              f"(elapsed {time.perf_counter() - self.start:.1f} s)",
              file=self.stream, flush=True)


#: Metrics of the summary over seeds printed at the end of a sweep (test, then training data).
PRINTED_SUMMARY = ("accuracy", "fairness_violation", "max_excess_accuracy_gap",
                   "worst_group_accuracy")
PRINTED_TRAIN_SUMMARY = tuple(f"train_{name}" for name in PRINTED_SUMMARY)


def run_sweep(
    data: BenchmarkData,
    *,
    model: str = "mlp",
    methods: Sequence[str] = ("none", "ceag"),
    rates: Sequence[float] = (0.0, 0.5, 0.9),
    seeds: Sequence[int] = (0,),
    net_params: Mapping[str, Any] | None = None,
    n_jobs: int | None = 1,
    threads: int | None = None,
    out: str | Path | None = "results",
    figures: bool = True,
    stream: TextIO | None = None,
    progress: bool | Callable[[MethodResult, int, int], None] = True,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> SweepResult:
    """Run every method × rate × seed on one dataset and model; write the table and figures.

    Parameters
    ----------
    data : BenchmarkData
        From :func:`load_benchmark_data`.
    model : str, default="mlp"
        Name recorded in the table; the net itself is ``net_params``
        (:func:`net_params_for` ``(model, dataset=data.name)`` if None).
    methods, rates, seeds : sequences
        As for :func:`~fairprune_sk.benchmark.runner.run_methods`.
    net_params : dict, optional
        Parameters of the nets (``module`` included).
    n_jobs : int or None, default=1
        Parallel runs through ``joblib.Parallel`` (any joblib backend, Dask included; -1: all
        cores or workers).
    threads : int, optional
        torch threads per run; None: 1 when ``n_jobs != 1``, else torch's setting.
    out : str or Path or None, default="results"
        Folder of ``results.csv``, ``summary.csv``, ``meta.json`` and the PNG figures; None
        writes nothing.
    figures : bool, default=True
        Draw the figures (needs ``out``).
    stream : text stream, optional
        Where progress and notes go (``sys.stdout`` if None).
    progress : bool or callable, default=True
        Print one line per finished run; a callable replaces the printer.
    config : dict, optional
        Extra configuration recorded in ``meta.json`` (the CLI passes its arguments).
    **options
        ``eg_constraint``, ``eg_upper_bound``, ``eg_proba``, ``threshold_constraint``,
        ``eg_params``, ``gridsearch_params``: as for
        :func:`~fairprune_sk.benchmark.methods.run_method`.

    Returns
    -------
    SweepResult
    """
    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()
    params = net_params_for(model, dataset=data.name) if net_params is None else dict(net_params)
    printer = _Progress(stream) if progress is True else (progress or None)
    results = run_methods(
        data.X_train, data.y_train, data.A_train, data.X_test, data.y_test, data.A_test,
        methods=methods, rates=rates, seeds=seeds, net_params=params, n_jobs=n_jobs,
        threads=threads, progress=printer, **options,
    )
    table = results_table(results, dataset=data.name, model=model, sensitive=data.sensitive)
    runs = pd.DataFrame([r.summary for r in results], columns=list(SUMMARY_COLUMNS))
    summary = summarize(runs)
    seconds = time.perf_counter() - start
    files: list[Path] = []
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "results.csv", index=False)
        flat_summary(summary).to_csv(out / "summary.csv", index=False)
        files += [out / "results.csv", out / "summary.csv"]
        if figures:
            title = f"{data.name}, {model}, groups by {data.sensitive}"
            from .figures import plot_sweep

            files += plot_sweep(table, out, title=title)
        seconds = time.perf_counter() - start
        meta = {
            "dataset": data.name, "model": model, "sensitive": data.sensitive,
            "methods": list(methods), "rates": [float(r) for r in rates],
            "seeds": [int(s) for s in seeds], "n_jobs": n_jobs, "threads": threads,
            "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
            "notes": data.notes, "seconds": seconds,
            "net_params": {k: _jsonable(v) for k, v in params.items()},
            **{k: _jsonable(v) for k, v in options.items()},
            **{k: _jsonable(v) for k, v in (config or {}).items()},
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
        files.append(out / "meta.json")
    return SweepResult(table=table, summary=summary, files=files, seconds=seconds, runs=runs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def print_summary(summary: pd.DataFrame, stream: TextIO | None = None) -> None:
    """Print :func:`run_sweep`'s summary as ``mean [low, high]`` (95 % t-interval over seeds).

    Test metrics first, then the same on the training data. With a single seed the interval is
    undefined: only the mean is printed, and a line says so.
    """
    stream = sys.stdout if stream is None else stream
    n_seeds = summary[("n_seeds", "")]
    if (n_seeds < 2).any():
        print("(one seed: no interval over seeds; run --seeds 3 or more to see the seed noise)",
              file=stream)
    with pd.option_context("display.width", 250, "display.max_columns", 20,
                           "display.max_colwidth", 40):
        for columns, what in ((PRINTED_SUMMARY, "test data"),
                              (PRINTED_TRAIN_SUMMARY, "training data")):
            present = [c for c in columns if c in summary.columns.get_level_values(0)]
            if present:
                print(f"\n{what}:", file=stream)
                print(format_summary(summary, present).to_string(), file=stream)
