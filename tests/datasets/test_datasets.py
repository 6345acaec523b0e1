import gzip
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer

from fairprune_sk.datasets import (
    load_adult,
    load_fashion_mnist,
    load_utkface,
    make_adult_preprocessor,
    read_idx,
)
from fairprune_sk.datasets._fashion_mnist import DEFAULT_FASHION_MNIST_PATH, FASHION_MNIST_CLASSES


# ----------------------------------------------------------------------------- Adult
@pytest.fixture(scope="module")
def adult():
    return load_adult()


def test_adult_shapes_and_columns(adult):
    assert adult.X_train.shape == (32561, 14)
    assert adult.X_test.shape == (16281, 14)
    assert len(adult.y_train) == 32561 and len(adult.y_test) == 16281
    assert list(adult.X_train.columns) == adult.feature_names
    assert sorted(adult.categorical_features + adult.numerical_features) == sorted(
        adult.feature_names
    )
    assert adult.target_names == ["<=50K", ">50K"]
    assert "CC BY 4.0" in adult.DESCR
    for col in adult.numerical_features:
        assert pd.api.types.is_integer_dtype(adult.X_train[col])


def test_adult_labels(adult):
    for y in (adult.y_train, adult.y_test):
        assert y.dtype == np.int64
        assert set(np.unique(y)) == {0, 1}
        assert 0.22 < y.mean() < 0.26
    # the test file's labels end with '.'; none may survive as a separate class
    assert adult.y_test.sum() == 3846


def test_adult_missing_values_are_nan(adult):
    for X in (adult.X_train, adult.X_test):
        assert not (X[adult.categorical_features] == "?").any().any()
        assert X["workclass"].isna().sum() > 0
        assert X["native_country"].isna().sum() > 0
    assert adult.X_train["workclass"].isna().sum() == 1836


def test_adult_sensitive_groups(adult):
    races = {"White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"}
    for A in (adult.A_train, adult.A_test):
        assert list(A.columns) == ["race", "sex"]
        assert set(A["race"]) == races
        assert set(A["sex"]) == {"Male", "Female"}
    assert (adult.A_train["sex"] == "Female").mean() == pytest.approx(0.33, abs=0.01)


def test_adult_drop_sensitive_and_single_column():
    data = load_adult(sensitive="sex", drop_sensitive=True)
    assert data.X_train.shape == (32561, 13)
    assert "sex" not in data.X_train.columns and "sex" not in data.categorical_features
    assert list(data.A_train.columns) == ["sex"]


def test_adult_as_frame_false():
    data = load_adult(as_frame=False, sensitive="race")
    assert isinstance(data.X_train, np.ndarray) and data.X_train.shape == (32561, 14)
    assert isinstance(data.y_test, np.ndarray) and data.y_test.dtype == np.int64
    assert data.A_train.shape == (32561,)
    Xt = data.preprocessor.fit_transform(data.X_train[:500])
    assert np.isfinite(Xt).all()


def test_adult_preprocessor(adult):
    pre = adult.preprocessor
    assert isinstance(pre, ColumnTransformer)
    assert not hasattr(pre, "transformers_")  # fresh, unfitted
    Xtr = pre.fit_transform(adult.X_train)
    Xte = pre.transform(adult.X_test)
    assert Xtr.shape[0] == 32561 and Xte.shape[0] == 16281
    assert Xtr.shape[1] == Xte.shape[1] > 14
    assert np.isfinite(Xtr).all() and np.isfinite(Xte).all()
    assert np.isfinite(Xtr.astype(np.float32)).all()
    # each call returns a new unfitted transformer
    assert load_adult().preprocessor is not pre


def test_make_adult_preprocessor_validation():
    pre = make_adult_preprocessor(["age"], ["sex"])
    X = pd.DataFrame({"age": [30, np.nan, 50], "sex": ["Male", np.nan, "Female"], "x": 1})
    out = pre.fit_transform(X)
    assert out.shape == (3, 3) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="numerical"):
        make_adult_preprocessor("age", ["sex"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sensitive": "gender"}, "sensitive"),
        ({"sensitive": ()}, "sensitive"),
        ({"drop_sensitive": "yes"}, "drop_sensitive"),
        ({"as_frame": None}, "as_frame"),
    ],
)
def test_adult_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_adult(**kwargs)


# ----------------------------------------------------------------------------- IDX
_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress``)."""
    code = _CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path, dtype, compress):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    got = read_idx(write_idx(tmp_path / "a.idx", array, compress=compress))
    assert got.shape == (2, 3, 4) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, array)


def test_read_idx_errors(tmp_path):
    good = np.arange(12, dtype=np.uint8).reshape(3, 4)
    payload = gzip.decompress(write_idx(tmp_path / "g", good).read_bytes())

    (tmp_path / "truncated").write_bytes(payload[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "truncated")

    (tmp_path / "trailing").write_bytes(payload + b"\x00")
    with pytest.raises(ValueError, match="trailing"):
        read_idx(tmp_path / "trailing")

    (tmp_path / "magic").write_bytes(b"\x01" + payload[1:])
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "magic")

    (tmp_path / "code").write_bytes(payload[:2] + b"\x07" + payload[3:])
    with pytest.raises(ValueError, match="type code"):
        read_idx(tmp_path / "code")

    (tmp_path / "header").write_bytes(payload[:6])
    with pytest.raises(ValueError, match="header"):
        read_idx(tmp_path / "header")

    (tmp_path / "badgz").write_bytes(gzip.compress(payload)[:20])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(tmp_path / "badgz")


# ----------------------------------------------------------------------------- Fashion-MNIST
def make_fake_fashion_mnist(folder: Path, n_train: int = 50, n_test: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def fake_fmnist(tmp_path):
    return make_fake_fashion_mnist(tmp_path / "fmnist", n_train=200, n_test=20)


def test_fashion_mnist_fake_folder(fake_fmnist):
    data = load_fashion_mnist(fake_fmnist)
    assert data.X_train.shape == (200, 1, 28, 28) and data.X_train.dtype == np.float32
    assert data.X_test.shape == (20, 1, 28, 28)
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0
    assert data.y_train.dtype == np.int64
    assert data.target_names == FASHION_MNIST_CLASSES
    assert list(data.groups_train[:3]) == ["T-shirt/top", "Trouser", "Pullover"]
    assert len(data.groups_test) == 20
    assert "not demographic" in data.DESCR


def test_fashion_mnist_minority_subsampling(fake_fmnist):
    data = load_fashion_mnist(fake_fmnist, minority_classes=["Shirt", 0], minority_fraction=0.1)
    counts = np.bincount(data.y_train, minlength=10)
    assert counts[6] == 2 and counts[0] == 2  # 10 % of 20
    assert all(counts[c] == 20 for c in range(10) if c not in (0, 6))
    np.testing.assert_array_equal(np.bincount(data.y_test, minlength=10), 2)  # test untouched
    again = load_fashion_mnist(fake_fmnist, minority_classes=["Shirt", 0], minority_fraction=0.1)
    np.testing.assert_array_equal(again.X_train, data.X_train)


def test_fashion_mnist_n_train_and_classes(fake_fmnist):
    data = load_fashion_mnist(fake_fmnist, n_train=50, random_state=1)
    assert len(data.y_train) == 50
    assert np.bincount(data.y_train, minlength=10).tolist() == [5] * 10
    sub = load_fashion_mnist(fake_fmnist, classes=["Trouser", "Bag"])
    assert set(sub.y_train) == {1, 8} and set(sub.y_test) == {1, 8}
    assert set(sub.groups_test) == {"Trouser", "Bag"}


def test_fashion_mnist_uncompressed_files(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 10), ("t10k", 5)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", imgs, compress=False)
        labels = np.arange(n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress=False)
    assert load_fashion_mnist(folder).X_test.shape == (5, 1, 28, 28)


def test_fashion_mnist_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(missing)
    message = str(info.value)
    assert str(missing) in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "path=" in message


def test_fashion_mnist_missing_file(fake_fmnist):
    (fake_fmnist / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist(fake_fmnist)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"minority_classes": [6]}, "minority_fraction"),
        ({"minority_fraction": 0.1}, "minority_classes"),
        ({"minority_classes": [6], "minority_fraction": 0.0}, "minority_fraction"),
        ({"minority_classes": ["Hat"], "minority_fraction": 0.5}, "minority_classes"),
        ({"classes": [10]}, "classes"),
        ({"n_train": 0}, "n_train"),
    ],
)
def test_fashion_mnist_argument_errors(fake_fmnist, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_fashion_mnist(fake_fmnist, **kwargs)


@pytest.mark.skipif(
    not Path(DEFAULT_FASHION_MNIST_PATH).is_dir(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_fashion_mnist_real():
    data = load_fashion_mnist()
    assert data.X_train.shape == (60000, 1, 28, 28)
    assert data.X_test.shape == (10000, 1, 28, 28)
    assert np.bincount(data.y_train).tolist() == [6000] * 10


# ----------------------------------------------------------------------------- UTKFace
@pytest.fixture
def utk_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "utk"
    folder.mkdir()
    names = [
        "25_0_0_20170116174525125.jpg",
        "8_1_1_20170109150557335.jpg",
        "45_1_2_20170104201443273.jpg.chip.jpg",
        "70_0_3_20170110122557410.jpg",
        "33_1_4_20170117190851213.jpg",
        "39_1_20170116174525125.jpg",  # malformed: no race
        "abc.jpg",  # malformed
    ]
    for i, name in enumerate(names):
        Image.new("RGB", (40, 50), color=(10 * i, 100, 200)).save(folder / name)
    (folder / "README.txt").write_text("not an image")
    return folder


def test_utkface_load(utk_folder):
    with pytest.warns(UserWarning, match="Skipped 2"):
        data = load_utkface(utk_folder, size=(16, 12))
    assert data.X.shape == (5, 3, 16, 12) and data.X.dtype == np.float32
    assert 0.0 <= data.X.min() and data.X.max() <= 1.0
    attrs = data.attributes.set_index("file")
    assert attrs.loc["8_1_1_20170109150557335.jpg", "gender"] == "Female"
    assert attrs.loc["8_1_1_20170109150557335.jpg", "race"] == "Black"
    assert attrs.loc["8_1_1_20170109150557335.jpg", "age_bin"] == "0-19"
    assert attrs.loc["70_0_3_20170110122557410.jpg", "age_bin"] == "60+"
    assert attrs.loc["45_1_2_20170104201443273.jpg.chip.jpg", "race"] == "Asian"
    assert attrs.loc["33_1_4_20170117190851213.jpg", "race"] == "Others"
    np.testing.assert_array_equal(data.y, (data.attributes["gender"] == "Female").astype(int))
    assert data.target_names == ["Male", "Female"]


def test_utkface_targets_and_options(utk_folder):
    with pytest.warns(UserWarning):
        race = load_utkface(utk_folder, target="race", grayscale=True, size=8)
    assert race.X.shape == (5, 1, 8, 8)
    assert sorted(race.y.tolist()) == [0, 1, 2, 3, 4]
    with pytest.warns(UserWarning):
        age = load_utkface(utk_folder, target="age_bin", max_images=3)
    assert len(age.y) == 3 and age.target_names == ["0-19", "20-39", "40-59", "60+"]


def test_utkface_errors(tmp_path, utk_folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_utkface(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No UTKFace image"):
        load_utkface(empty)
    with pytest.raises(ValueError, match="target"):
        load_utkface(utk_folder, target="emotion")
    with pytest.raises(ValueError, match="size"):
        load_utkface(utk_folder, size=(0, 3))
    with pytest.raises(ValueError, match="max_images"):
        load_utkface(utk_folder, max_images=0)


def test_utkface_unreadable_image(tmp_path):
    from PIL import Image

    folder = tmp_path / "utk"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "20_0_0_1.jpg")
    (folder / "30_1_1_2.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="could not read"):
        data = load_utkface(folder)
    assert len(data.y) == 1
