"""The user's own table (CSV or Parquet) as a train/test split with groups."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval, validate_params

from ._adult import make_adult_preprocessor
from ._registry import check_sensitive
from ._split import (
    DataOptionError,
    DatasetDefaults,
    DatasetSplit,
    _stratified_split,
    _subsample,
)

__all__ = ["PREDICTION_SUFFIXES", "TABLE_SUFFIXES", "Predictions", "load_predictions",
           "load_table", "read_table"]

#: File name endings :func:`read_table` reads: CSV, and Parquet (with pyarrow or fastparquet).
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
#: Rates of the audit of a table (a first look; the bundled datasets have measured ones).
TABLE_RATES = (0.5, 0.8, 0.9)
#: Training of a table of any size: SGD with momentum, so that a few thousand rows train too.
TABLE_TRAINING = {"momentum": 0.9, "batch_size": 128}
#: Groups with a missing value in a sensitive column are named this.
MISSING_GROUP = "(missing)"


def read_table(path: str | os.PathLike, parameter: str = "path") -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame (by its name's ending).

    Parameters
    ----------
    path : str or path-like
        A ``.csv``, ``.parquet`` or ``.pq`` file.
    parameter : str, default="path"
        The option that named the file, for the messages.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    DataOptionError
        A missing file, another ending, a Parquet file without pyarrow or fastparquet
        installed, an unreadable or empty file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataOptionError(parameter, f"must be a .csv or .parquet file; got {str(path)!r}")
    if not path.is_file():
        raise DataOptionError(parameter, f"must be a file; {str(path)!r} "
                                         f"{'is a folder' if path.is_dir() else 'does not exist'}")
    try:
        table = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except ImportError as exc:
        raise DataOptionError(parameter, f"is a Parquet file, which needs pyarrow: pip install "
                                         f"pyarrow ({exc})") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataOptionError(parameter, f"could not be read ({str(path)!r}: {exc})") from None
    if table.empty:
        raise DataOptionError(parameter, f"has no rows ({str(path)!r})")
    return table


def _check_columns(table: pd.DataFrame, columns: Sequence[str], parameter: str,
                   source: str) -> None:
    """A :class:`DataOptionError` naming the ``columns`` that ``table`` lacks."""
    missing = [c for c in dict.fromkeys(columns) if c not in table.columns]
    if not missing:
        return
    shown = ", ".join(map(str, table.columns[:20]))
    more = f" and {len(table.columns) - 20} more" if len(table.columns) > 20 else ""
    names = ", ".join(map(repr, missing))
    what = (f"{names}, not a column" if len(missing) == 1
            else f"{names}, which are not columns")
    raise DataOptionError(parameter, f"names {what} of {source} (its columns: {shown}{more})")


def _check_same_columns(test: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in test.columns]
    if missing:
        names = ", ".join(map(repr, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DataOptionError("test_path", f"{source} lacks {len(missing)} column(s) of the "
                                           f"training table: {names}")


def _check_labels(table: pd.DataFrame, target: str, source: str) -> None:
    missing = int(table[target].isna().sum())
    if missing:
        raise DataOptionError("target", f"column {target!r} of {source} has {missing} missing "
                                        "value(s); drop or fill those rows")


def _groups(table: pd.DataFrame, sensitive: Sequence[str]) -> pd.DataFrame:
    groups = table[list(sensitive)].reset_index(drop=True)
    return groups.astype(object).where(groups.notna(), MISSING_GROUP)


@validate_params(
    {
        "path": [str, os.PathLike],
        "target": [str],
        "sensitive": [str, "array-like"],
        "test_path": [str, os.PathLike, None],
        "test_size": [Interval(Real, 0, 1, closed="neither")],
        "n_train": [Interval(Integral, 2, None, closed="left"), None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def load_table(
    path: str | os.PathLike,
    *,
    target: str,
    sensitive: str | Sequence[str],
    test_path: str | os.PathLike | None = None,
    test_size: float = 0.25,
    n_train: int | None = None,
    random_state: int = 0,
) -> DatasetSplit:
    """The user's table as a :class:`DatasetSplit`: one label column, the others features.

    Numeric columns are imputed (median) and scaled, every other column (strings,
    categories, booleans) imputed (most frequent) and one-hot encoded, by a
    :class:`~sklearn.compose.ColumnTransformer` (:func:`make_adult_preprocessor`) fitted on the
    training rows. The sensitive columns stay features too, as in the bundled Adult data; a
    missing value in one of them is the group ``"(missing)"``.

    Parameters
    ----------
    path : str or path-like
        A ``.csv`` or ``.parquet`` file (Parquet needs pyarrow).
    target : str
        The label column.
    sensitive : str or sequence of str
        Group column(s); several give intersectional groups.
    test_path : str or path-like, optional
        A second file with the same columns, the test rows. None: a random split of ``path``.
    test_size : float in (0, 1), default=0.25
        The share of test rows of the random split, stratified by label × group where every
        combination has two rows, else by label.
    n_train : int >= 2, optional
        Subsample the training rows to this many (stratified by label where possible).
    random_state : int >= 0, default=0
        Seed of the split and the subsample.

    Returns
    -------
    DatasetSplit
        Named after the file; ``preprocessor`` is the fitted ``ColumnTransformer``.

    Raises
    ------
    DataOptionError
        A file that cannot be read, a column that is not in it (the message names it), a label
        column with missing values or a single class.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pandas as pd
    >>> from fairprune_sk.datasets import load_table
    >>> path = Path(tempfile.mkdtemp()) / "people.csv"
    >>> pd.DataFrame({"age": [25, 32, 47, 51, 38, 29, 60, 44], "sex": list("FMFMFMFM"),
    ...               "job": list("abcabcab"), "label": [0, 1, 0, 1, 1, 0, 1, 0]}
    ...              ).to_csv(path, index=False)
    >>> data = load_table(path, target="label", sensitive="sex", test_size=0.5)
    >>> data.describe()
    'people.csv: 4 training and 4 test samples, input shape (6,), 2 classes, 2 groups by sex'
    >>> load_table(path, target="income", sensitive="sex")
    Traceback (most recent call last):
    ...
    fairprune_sk.datasets.DataOptionError: target names 'income', not a column of people.csv ...
    """
    table = read_table(path, "path")
    source = Path(path).name
    sensitive = check_sensitive(sensitive)
    _check_columns(table, [target], "target", source)
    _check_columns(table, sensitive, "sensitive", source)
    if target in sensitive:
        raise DataOptionError("sensitive", f"names the label column {target!r}; the groups of a "
                                           "table are other columns")
    features = [column for column in table.columns if column != target]
    if not features:
        raise DataOptionError("target", f"is the only column of {source}: no feature is left")
    _check_labels(table, target, source)
    notes = []
    if test_path is not None:
        test = read_table(test_path, "test_path")
        test_source = Path(test_path).name
        _check_same_columns(test, [target, *features], test_source)
        _check_labels(test, target, test_source)
        train = table
        notes.append(f"{source}: {len(train)} training rows; {test_source}: {len(test)} test rows")
    else:
        rows_train, rows_test, how = _stratified_split(
            table[target].to_numpy(), _groups(table, sensitive), test_size, random_state)
        train, test = table.iloc[rows_train], table.iloc[rows_test]
        notes.append(f"{source}: {len(table)} rows; random {1 - test_size:.0%}/{test_size:.0%} "
                     f"train/test split (stratified by {how}, seed {random_state})")
    if n_train is not None and n_train < len(train):
        rows = _subsample(np.arange(len(train)), train[target].to_numpy(), n_train, random_state)
        train = train.iloc[np.sort(rows)]
        notes.append(f"subsampled the training rows to {n_train} (seed {random_state})")
    if train[target].nunique() < 2:
        raise DataOptionError("target", f"column {target!r} has a single class in the training "
                                        "rows; an audit needs two or more")
    numerical = [c for c in features if pd.api.types.is_numeric_dtype(table[c])
                 and not pd.api.types.is_bool_dtype(table[c])]
    categorical = [c for c in features if c not in numerical]
    preprocessor = make_adult_preprocessor(numerical, categorical).fit(train[features])
    groups_train, groups_test = _groups(train, sensitive), _groups(test, sensitive)
    if (groups_test == MISSING_GROUP).any().any():
        notes.append(f"rows with no value in {' or '.join(sensitive)} form the group "
                     f"{MISSING_GROUP!r}")
    return DatasetSplit(
        source,
        X_train=np.asarray(preprocessor.transform(train[features]), dtype=np.float32),
        y_train=train[target].to_numpy(),
        groups_train=groups_train,
        X_test=np.asarray(preprocessor.transform(test[features]), dtype=np.float32),
        y_test=test[target].to_numpy(),
        groups_test=groups_test,
        defaults=DatasetDefaults(rates=TABLE_RATES, sensitive=sensitive, target=target,
                                 **TABLE_TRAINING),
        preprocessor=preprocessor, notes=tuple(notes),
    )


#: File name endings :func:`load_predictions` reads.
PREDICTION_SUFFIXES = (*TABLE_SUFFIXES, ".npz")
_DENSE, _COMPRESSED = "proba_dense_", "proba_compressed_"


@dataclass(frozen=True, eq=False)
class Predictions:
    """Outputs of a dense and a compressed model computed elsewhere, read by
    :func:`load_predictions`.

    Attributes
    ----------
    name : str
        The file's name.
    y_true : ndarray of shape (n_samples,)
        True labels.
    proba_dense, proba_compressed : ndarray of shape (n_samples, n_classes)
        Class probabilities, columns in the order of ``classes``.
    classes : ndarray of shape (n_classes,)
        The class labels, as the column names give them.
    groups : pandas.DataFrame
        The sensitive columns.
    """

    name: str
    y_true: np.ndarray
    proba_dense: np.ndarray
    proba_compressed: np.ndarray
    classes: np.ndarray
    groups: pd.DataFrame


def _read_npz(path: Path, parameter: str) -> pd.DataFrame:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            columns = {key: arrays[key] for key in arrays.files}
    except ValueError as exc:  # object arrays need pickle, which a data file must not
        raise DataOptionError(parameter, f"must hold plain arrays, not object arrays: save "
                                         f"strings as np.asarray(values, dtype=str) "
                                         f"({str(path)!r}: {exc})") from None
    except OSError as exc:
        raise DataOptionError(parameter, f"could not be read as .npz ({str(path)!r}: "
                                         f"{exc})") from None
    shapes = {key: value.shape for key, value in columns.items()}
    if not columns or any(len(shape) != 1 for shape in shapes.values()) or \
            len({shape[0] for shape in shapes.values()}) != 1:
        raise DataOptionError(parameter, f"must hold 1-D arrays of one length, one per column; "
                                         f"{str(path)!r} holds {shapes}")
    return pd.DataFrame(columns)


def _class_labels(names: Sequence[str], y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The classes named by the column suffixes and ``y`` in the same type: ints when every
    suffix is an integer and ``y`` is integer, strings otherwise."""
    if pd.api.types.is_integer_dtype(y) and all(name.lstrip("-").isdigit() for name in names):
        return np.array([int(name) for name in names]), y.to_numpy()
    return np.array(names, dtype=object), y.astype(str).to_numpy(dtype=object)


@validate_params(
    {"path": [str, os.PathLike], "sensitive": [str, "array-like"]},
    prefer_skip_nested_validation=True,
)
def load_predictions(path: str | os.PathLike, *, sensitive: str | Sequence[str]) -> Predictions:
    """Read a file of outputs computed elsewhere: labels, groups and both models' probabilities.

    Parameters
    ----------
    path : str or path-like
        A ``.csv``, ``.parquet`` or ``.npz`` file with the columns ``y_true``, the sensitive
        columns, ``proba_dense_<class>`` and ``proba_compressed_<class>`` for every class (an
        ``.npz`` holds one 1-D array per column, by the same names).
    sensitive : str or sequence of str
        Group column(s).

    Returns
    -------
    Predictions

    Raises
    ------
    DataOptionError
        A file that cannot be read, a column that is missing (the message names it), classes
        that differ between the dense and the compressed columns, or a label without its
        columns.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pandas as pd
    >>> from fairprune_sk.datasets import load_predictions
    >>> path = Path(tempfile.mkdtemp()) / "outputs.csv"
    >>> pd.DataFrame({"y_true": [0, 1, 1], "sex": ["F", "M", "F"],
    ...               "proba_dense_0": [0.9, 0.2, 0.3], "proba_dense_1": [0.1, 0.8, 0.7],
    ...               "proba_compressed_0": [0.6, 0.3, 0.5],
    ...               "proba_compressed_1": [0.4, 0.7, 0.5]}).to_csv(path, index=False)
    >>> outputs = load_predictions(path, sensitive="sex")
    >>> outputs.classes.tolist(), outputs.proba_compressed.shape
    ([0, 1], (3, 2))
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise DataOptionError("path", f"must be a file; {str(path)!r} does not exist")
        table = _read_npz(path, "path")
    else:
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise DataOptionError("path", f"must be a .csv, .parquet or .npz file; got "
                                          f"{str(path)!r}")
        table = read_table(path, "path")
    sensitive = check_sensitive(sensitive)
    _check_columns(table, ["y_true"], "path", path.name)
    _check_columns(table, sensitive, "sensitive", path.name)
    columns = [str(column) for column in table.columns]
    dense = [c[len(_DENSE):] for c in columns if c.startswith(_DENSE)]
    compressed = [c[len(_COMPRESSED):] for c in columns if c.startswith(_COMPRESSED)]
    if len(dense) < 2 or sorted(dense) != sorted(compressed):
        raise DataOptionError(
            "path", f"must have one {_DENSE}<class> and one {_COMPRESSED}<class> column per "
                    f"class, two classes or more; {path.name} has {_DENSE}: "
                    f"{', '.join(dense) or 'none'}; {_COMPRESSED}: "
                    f"{', '.join(compressed) or 'none'}")
    if table["y_true"].isna().any():
        raise DataOptionError("path", f"column 'y_true' of {path.name} has missing values")
    classes, y_true = _class_labels(dense, table["y_true"])
    unknown = sorted(set(map(str, y_true)) - set(map(str, classes)))
    if unknown:
        raise DataOptionError("path", f"has labels in y_true without {_DENSE}<class> columns: "
                                      f"{', '.join(unknown[:10])}")
    table.columns = columns
    return Predictions(
        name=path.name, y_true=y_true,
        proba_dense=table[[_DENSE + c for c in dense]].to_numpy(dtype=np.float64),
        proba_compressed=table[[_COMPRESSED + c for c in dense]].to_numpy(dtype=np.float64),
        classes=classes, groups=_groups(table, sensitive),
    )
