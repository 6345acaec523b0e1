"""UCI Adult (Census Income), bundled with the package, original train/test split."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from importlib import resources

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import Bunch

from ._split import DatasetDefaults, DatasetSplit

__all__ = ["load_adult", "make_adult_preprocessor"]

_DATA_PACKAGE = "fairprune_sk.datasets.data"

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]
ADULT_NUMERICAL = [
    "age",
    "fnlwgt",
    "education_num",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
]
ADULT_CATEGORICAL = [
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
]
_FEATURES = ADULT_COLUMNS[:-1]
_TARGET_NAMES = ["<=50K", ">50K"]


def make_adult_preprocessor(
    numerical: Sequence[str], categorical: Sequence[str]
) -> ColumnTransformer:
    """Return an unfitted preprocessor for Adult-like tables.

    Numerical columns: ``SimpleImputer(strategy="median")`` then ``StandardScaler``.
    Categorical columns: ``SimpleImputer(strategy="most_frequent")`` then
    ``OneHotEncoder(handle_unknown="ignore", sparse_output=False)``. The output is a dense
    float array (cast it with ``.astype(np.float32)`` for torch).

    Parameters
    ----------
    numerical : sequence of str or int
        Names (or positions) of the numerical columns.
    categorical : sequence of str or int
        Names (or positions) of the categorical columns.

    Returns
    -------
    preprocessor : sklearn.compose.ColumnTransformer
        Fresh and unfitted; other columns are dropped.

    Examples
    --------
    >>> pre = make_adult_preprocessor(["age"], ["sex"])
    >>> [name for name, _, _ in pre.transformers]
    ['num', 'cat']
    """
    for name, cols in (("numerical", numerical), ("categorical", categorical)):
        if isinstance(cols, str) or not all(isinstance(c, str | int) for c in cols):
            raise ValueError(
                f"{name} must be a sequence of column names (or of column positions), got {cols!r}."
            )
    numeric_pipe = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    )
    categorical_pipe = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            (
                "onehot",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32),
            ),
        ]
    )
    return ColumnTransformer(
        [("num", numeric_pipe, list(numerical)), ("cat", categorical_pipe, list(categorical))],
        remainder="drop",
        sparse_threshold=0.0,
    )


def _read_adult_file(name: str, *, skip_first_line: bool) -> tuple[pd.DataFrame, pd.Series]:
    with resources.files(_DATA_PACKAGE).joinpath(name).open("rb") as raw:
        with gzip.open(raw, "rt", encoding="utf-8") as fh:
            frame = pd.read_csv(
                fh,
                header=None,
                names=ADULT_COLUMNS,
                sep=",",
                skipinitialspace=True,
                na_values=["?"],
                keep_default_na=False,
                skiprows=1 if skip_first_line else 0,
                skip_blank_lines=True,
                dtype={c: "string" for c in ADULT_CATEGORICAL + ["income"]},
            )
    label = frame.pop("income").str.rstrip(".")
    unknown = sorted(set(label.dropna()) - set(_TARGET_NAMES))
    if unknown or label.isna().any():
        raise ValueError(f"Unexpected income labels in {name}: {unknown or 'missing values'}.")
    y = pd.Series((label == ">50K").to_numpy(dtype=np.int64), name="income")
    for col in ADULT_CATEGORICAL:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), np.nan)
    for col in ADULT_NUMERICAL:
        frame[col] = frame[col].astype(np.int64)
    return frame, y


def _check_sensitive(sensitive) -> list[str]:
    if isinstance(sensitive, str):
        sensitive = [sensitive]
    try:
        sensitive = list(sensitive)
    except TypeError:
        sensitive = None
    if sensitive is None or not sensitive or not all(isinstance(s, str) for s in sensitive):
        raise ValueError(
            f"sensitive must be a column name or a non-empty sequence of column names among "
            f"{_FEATURES}, got {sensitive!r}."
        )
    unknown = [s for s in sensitive if s not in _FEATURES]
    if unknown:
        raise ValueError(
            f"sensitive contains unknown column(s) {unknown}; expected names among {_FEATURES}."
        )
    return sensitive


def load_adult(
    *,
    sensitive: str | Sequence[str] = ("race", "sex"),
    drop_sensitive: bool = False,
    as_frame: bool = True,
) -> Bunch:
    """Load the UCI Adult (Census Income) data set bundled with the package.

    The original split: 32,561 training and 16,281 test rows. Nothing is downloaded.

    Parameters
    ----------
    sensitive : str or sequence of str, default=("race", "sex")
        Feature column(s) returned as the sensitive features ``A_train`` / ``A_test``.
    drop_sensitive : bool, default=False
        Remove the sensitive columns from ``X_train`` / ``X_test`` (and from the
        preprocessor's column lists).
    as_frame : bool, default=True
        If True, ``X_*`` and ``A_*`` are DataFrames and ``y_*`` Series. If False, ``X_*``
        are object ndarrays, ``y_*`` int64 ndarrays, ``A_*`` ndarrays (1-D when a single
        sensitive column); the ``preprocessor`` then selects columns by position.

    Returns
    -------
    data : sklearn.utils.Bunch
        With keys:

        - ``X_train``, ``X_test`` : DataFrame of shape (n_samples, 14) (fewer with
          ``drop_sensitive``); categorical columns are object strings, missing values
          ('?' in the files) are NaN, numerical columns are int64.
        - ``y_train``, ``y_test`` : int64 Series, 1 for income ">50K".
        - ``A_train``, ``A_test`` : DataFrame of the sensitive columns.
        - ``feature_names``, ``categorical_features``, ``numerical_features`` : list of str,
          the columns of ``X_*``.
        - ``sensitive_features`` : list of str.
        - ``target_names`` : ``["<=50K", ">50K"]``.
        - ``preprocessor`` : a fresh unfitted :class:`~sklearn.compose.ColumnTransformer`
          from :func:`make_adult_preprocessor`.
        - ``DESCR`` : the licence and format notice (CC BY 4.0, keep it with any copy).

    Examples
    --------
    >>> data = load_adult()
    >>> data.X_train.shape, data.X_test.shape
    ((32561, 14), (16281, 14))
    >>> sorted(data.A_train["sex"].unique())
    ['Female', 'Male']
    """
    sensitive = _check_sensitive(sensitive)
    if not isinstance(drop_sensitive, bool | np.bool_):
        raise ValueError(f"drop_sensitive must be a bool, got {drop_sensitive!r}.")
    if not isinstance(as_frame, bool | np.bool_):
        raise ValueError(f"as_frame must be a bool, got {as_frame!r}.")

    X_train, y_train = _read_adult_file("adult.data.gz", skip_first_line=False)
    X_test, y_test = _read_adult_file("adult.test.gz", skip_first_line=True)
    A_train = X_train[sensitive].copy()
    A_test = X_test[sensitive].copy()
    if drop_sensitive:
        X_train = X_train.drop(columns=sensitive)
        X_test = X_test.drop(columns=sensitive)
    features = list(X_train.columns)
    numerical = [c for c in ADULT_NUMERICAL if c in features]
    categorical = [c for c in ADULT_CATEGORICAL if c in features]
    descr = resources.files(_DATA_PACKAGE).joinpath("ADULT_NOTICE.md").read_text("utf-8")

    if as_frame:
        preprocessor = make_adult_preprocessor(numerical, categorical)
    else:
        preprocessor = make_adult_preprocessor(
            [features.index(c) for c in numerical], [features.index(c) for c in categorical]
        )
        X_train, X_test = X_train.to_numpy(dtype=object), X_test.to_numpy(dtype=object)
        y_train, y_test = y_train.to_numpy(), y_test.to_numpy()
        A_train, A_test = A_train.to_numpy(dtype=object), A_test.to_numpy(dtype=object)
        if len(sensitive) == 1:
            A_train, A_test = A_train.ravel(), A_test.ravel()

    return Bunch(
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        A_train=A_train,
        A_test=A_test,
        feature_names=features,
        categorical_features=categorical,
        numerical_features=numerical,
        sensitive_features=sensitive,
        target_names=list(_TARGET_NAMES),
        preprocessor=preprocessor,
        DESCR=descr,
    )


def _adult_split(*, sensitive: Sequence[str], n_train: int | None, random_state: int,
                 defaults: DatasetDefaults) -> DatasetSplit:
    """Bundled Adult as a :class:`DatasetSplit`: the original train/test split, preprocessed
    by :func:`make_adult_preprocessor` fitted on the (subsampled) training rows."""
    data = load_adult(sensitive=list(sensitive))
    X_train, y_train, A_train = data.X_train, data.y_train, data.A_train
    notes = []
    if n_train is not None and n_train < len(X_train):
        rows = np.random.default_rng(random_state).choice(len(X_train), n_train, replace=False)
        X_train, y_train, A_train = X_train.iloc[rows], y_train.iloc[rows], A_train.iloc[rows]
        notes.append(f"subsampled the Adult training set to {n_train} random rows "
                     f"(seed {random_state})")
    preprocessor = data.preprocessor.fit(X_train)
    return DatasetSplit(
        "adult",
        X_train=np.asarray(preprocessor.transform(X_train), dtype=np.float32),
        y_train=np.asarray(y_train),
        groups_train=A_train.reset_index(drop=True),
        X_test=np.asarray(preprocessor.transform(data.X_test), dtype=np.float32),
        y_test=np.asarray(data.y_test),
        groups_test=data.A_test.reset_index(drop=True),
        defaults=defaults, preprocessor=preprocessor, notes=tuple(notes),
    )
