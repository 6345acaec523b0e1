"""The user's own files: a table (:func:`load_table`) and outputs computed elsewhere
(:func:`load_predictions`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fairprune_sk.datasets import (
    DataOptionError,
    DatasetSplit,
    load_adult,
    load_predictions,
    load_table,
)


@pytest.fixture(scope="module")
def adult_csv(tmp_path_factory):
    """1,200 rows of bundled Adult as a CSV, a string label, missing values kept."""
    data = load_adult()
    table = data.X_train.iloc[:1200].copy()
    table["income"] = np.where(data.y_train.iloc[:1200] == 1, ">50K", "<=50K")
    path = tmp_path_factory.mktemp("tables") / "adult.csv"
    table.to_csv(path, index=False)
    return path


def test_table_numeric_columns_scaled_strings_one_hot(adult_csv):
    data = load_table(adult_csv, target="income", sensitive=["sex"], test_size=0.25)
    assert isinstance(data, DatasetSplit) and data.name == "adult.csv"
    raw = pd.read_csv(adult_csv)
    assert len(data.y_train) + len(data.y_test) == 1200 and len(data.y_test) == 300
    assert data.classes.tolist() == ["<=50K", ">50K"] and data.sensitive == ("sex",)
    numerical = data.preprocessor.transformers_[0][2]
    categorical = data.preprocessor.transformers_[1][2]
    assert numerical == ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss",
                         "hours_per_week"]
    assert "sex" in categorical and "income" not in categorical + numerical
    width = 6 + sum(raw[c].nunique() for c in categorical)  # one column per category
    assert data.X_train.shape[1] <= width and data.X_train.dtype == np.float32
    np.testing.assert_allclose(data.X_train[:, :6].mean(axis=0), 0, atol=1e-5)  # scaled
    assert set(np.unique(data.X_train[:, 6:])) <= {0.0, 1.0}  # one-hot
    # stratified by label x group: each test group keeps the table's label balance
    for sex in ("Female", "Male"):
        share = (raw.loc[raw["sex"] == sex, "income"] == ">50K").mean()
        test = data.y_test[data.groups_test["sex"] == sex]
        assert np.mean(test == ">50K") == pytest.approx(share, abs=0.03)
    assert "stratified by label × group" in data.notes[0]


def test_table_with_a_test_file_and_a_subsample(adult_csv, tmp_path):
    raw = pd.read_csv(adult_csv)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    raw.iloc[:900].to_csv(train, index=False)
    raw.iloc[900:].to_csv(test, index=False)
    data = load_table(train, target="income", sensitive=["race", "sex"], test_path=test,
                      n_train=500, random_state=1)
    assert len(data.y_train) == 500 and len(data.y_test) == 300
    np.testing.assert_array_equal(data.y_test, raw["income"].iloc[900:])
    assert data.grouping == "race & sex"
    assert data.notes[-1] == "subsampled the training rows to 500 (seed 1)"


def test_table_parquet(adult_csv, tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "adult.parquet"
    pd.read_csv(adult_csv).to_parquet(path)
    parquet = load_table(path, target="income", sensitive="sex")
    csv = load_table(adult_csv, target="income", sensitive="sex")
    np.testing.assert_array_equal(parquet.y_test, csv.y_test)
    np.testing.assert_allclose(parquet.X_test, csv.X_test, atol=1e-6)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")

    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(DataOptionError, match="needs pyarrow: pip install pyarrow"):
        load_table(path, target="y", sensitive="a")


@pytest.mark.parametrize(
    ("options", "parameter", "message"),
    [
        ({"target": "incom", "sensitive": "sex"}, "target",
         "target names 'incom', not a column of adult.csv (its columns: age, workclass"),
        ({"target": "income", "sensitive": ["sex", "gender"]}, "sensitive",
         "sensitive names 'gender', not a column of adult.csv"),
        ({"target": "income", "sensitive": "income"}, "sensitive",
         "sensitive names the label column 'income'"),
        ({"target": "income", "sensitive": ["sex", "sex"]}, "sensitive",
         "sensitive names sex twice"),
    ],
)
def test_table_unknown_column_is_named(adult_csv, options, parameter, message):
    with pytest.raises(DataOptionError) as info:
        load_table(adult_csv, **options)
    assert info.value.parameter == parameter and str(info.value).startswith(message)


def test_table_file_problems(tmp_path, adult_csv):
    with pytest.raises(DataOptionError, match="path must be a file; .* does not exist"):
        load_table(tmp_path / "none.csv", target="y", sensitive="a")
    with pytest.raises(DataOptionError, match=r"path must be a \.csv or \.parquet file"):
        load_table(tmp_path / "x.xlsx", target="y", sensitive="a")
    one_class = tmp_path / "one.csv"
    pd.DataFrame({"x": range(10), "a": list("ab") * 5, "y": 1}).to_csv(one_class, index=False)
    with pytest.raises(DataOptionError, match="single class"):
        load_table(one_class, target="y", sensitive="a")
    holes = tmp_path / "holes.csv"
    pd.DataFrame({"x": range(10), "a": list("ab") * 5,
                  "y": [0, 1, None, 1, 0, 1, 0, 1, 0, 1]}).to_csv(holes, index=False)
    with pytest.raises(DataOptionError, match="target column 'y' of holes.csv has 1 missing"):
        load_table(holes, target="y", sensitive="a")
    with pytest.raises(DataOptionError, match="test_path one.csv lacks 15 column.s. of the "
                                              "training table: 'income', 'age', 'workclass',"):
        load_table(adult_csv, target="income", sensitive="sex", test_path=one_class)
    with pytest.raises(DataOptionError, match="names 'a', 'b', which are not columns of"):
        load_table(adult_csv, target="income", sensitive=["a", "b"])


def test_missing_group_values_are_a_group_of_their_own(tmp_path):
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=80), "a": ["p", "q", None, "q"] * 20,
                  "y": rng.integers(0, 2, 80)}).to_csv(path, index=False)
    data = load_table(path, target="y", sensitive="a")
    assert set(data.groups_test["a"]) == {"p", "q", "(missing)"}
    assert "form the group '(missing)'" in data.notes[-1]


# ----------------------------------------------------------------------------- predictions
def write_predictions(path, n=200, classes=("0", "1", "2"), seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"y_true": rng.integers(0, len(classes), n),
                          "sex": rng.choice(["F", "M"], n), "age": rng.choice(["y", "o"], n)})
    for name, alpha in (("dense", 3.0), ("compressed", 1.0)):
        proba = rng.dirichlet(np.full(len(classes), alpha), n)
        for k, label in enumerate(classes):
            table[f"proba_{name}_{label}"] = proba[:, k]
    if path.suffix == ".npz":
        np.savez(path, **{c: np.asarray(table[c].tolist()) for c in table.columns})
    else:
        table.to_csv(path, index=False)
    return table


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_predictions_file(tmp_path, suffix):
    path = tmp_path / f"outputs{suffix}"
    table = write_predictions(path)
    outputs = load_predictions(path, sensitive=["sex", "age"])
    assert outputs.classes.tolist() == [0, 1, 2] and outputs.y_true.tolist() == table[
        "y_true"].tolist()
    np.testing.assert_allclose(outputs.proba_compressed[:, 2], table["proba_compressed_2"])
    assert list(outputs.groups.columns) == ["sex", "age"]


def test_predictions_with_string_classes(tmp_path):
    path = tmp_path / "outputs.csv"
    table = write_predictions(path, classes=("cat", "dog"))
    table["y_true"] = np.where(table["y_true"] == 0, "cat", "dog")
    table.to_csv(path, index=False)
    outputs = load_predictions(path, sensitive="sex")
    assert outputs.classes.tolist() == ["cat", "dog"] and set(outputs.y_true) == {"cat", "dog"}


def test_predictions_problems_are_named(tmp_path):
    path = tmp_path / "outputs.csv"
    table = write_predictions(path)
    with pytest.raises(DataOptionError, match="sensitive names 'race', not a column"):
        load_predictions(path, sensitive="race")
    table.drop(columns="proba_compressed_2").to_csv(path, index=False)
    with pytest.raises(DataOptionError, match="proba_compressed_: 0, 1$"):
        load_predictions(path, sensitive="sex")
    table.assign(y_true=table["y_true"] + 5).to_csv(path, index=False)
    with pytest.raises(DataOptionError, match="labels in y_true without proba_dense_<class> "
                                              "columns: 5, 6, 7"):
        load_predictions(path, sensitive="sex")
    table.drop(columns="y_true").to_csv(path, index=False)
    with pytest.raises(DataOptionError, match="path names 'y_true', not a column"):
        load_predictions(path, sensitive="sex")
    objects = tmp_path / "objects.npz"
    np.savez(objects, y_true=np.array([0, 1]), sex=np.array(["F", None], dtype=object))
    with pytest.raises(DataOptionError, match="not object arrays"):
        load_predictions(objects, sensitive="sex")
