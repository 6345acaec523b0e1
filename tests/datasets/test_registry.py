"""The registry of datasets and its one container, :class:`DatasetSplit`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fairprune_sk.datasets import (
    DATASETS,
    MODELS,
    DataOptionError,
    DatasetSplit,
    load_adult,
    load_dataset,
)


def test_every_dataset_has_its_defaults_in_one_place():
    assert set(DATASETS) == {"adult", "fashion_mnist", "digits", "utkface"}
    for name, info in DATASETS.items():
        defaults = info.defaults
        assert info.name == name
        assert set(defaults.sensitive) <= set(info.sensitive_choices)
        assert defaults.model in info.models and set(info.models) <= set(MODELS)
        assert defaults.rates == tuple(sorted(set(defaults.rates)))
        assert all(0 <= rate < 1 for rate in defaults.rates)
        assert (defaults.target is None) == (not info.targets)
    assert DATASETS["adult"].defaults.sensitive == ("race", "sex")
    assert DATASETS["utkface"].defaults.model == "resnet18"
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["adult"].defaults.lr = 1.0
    with pytest.raises(TypeError):
        DATASETS["mnist"] = DATASETS["adult"]


def test_adult_split_is_the_bundled_data_preprocessed_on_the_training_rows():
    data = load_dataset("adult", sensitive="race", n_train=500, random_state=3)
    assert isinstance(data, DatasetSplit) and data.name == "adult"
    raw = load_adult(sensitive="race")
    assert data.X_train.dtype == np.float32 and data.X_train.shape[0] == 500
    assert data.X_test.shape[0] == len(raw.y_test) == len(data.groups_test)
    assert data.sensitive == ("race",) and data.grouping == "race"
    np.testing.assert_array_equal(data.classes, [0, 1])
    np.testing.assert_array_equal(data.groups_test["race"], raw.A_test["race"])
    # the preprocessor is fitted on the 500 training rows only: their scaled columns are centred
    np.testing.assert_allclose(data.X_train[:, :6].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.preprocessor.transform(raw.X_test), data.X_test, atol=1e-6)
    assert data.notes == ("subsampled the Adult training set to 500 random rows (seed 3)",)
    assert data.describe().startswith("adult: 500 training and 16281 test samples")
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.X_train = None


def test_class_grouped_datasets_and_image_shapes():
    flat = load_dataset("digits", n_train=100)
    images = load_dataset("digits", model="cnn", n_train=100)
    assert flat.X_train.shape == (100, 64) and images.X_train.shape == (100, 1, 8, 8)
    np.testing.assert_array_equal(images.X_train.reshape(100, -1), flat.X_train)
    assert flat.sensitive == ("class",) and "not demographic groups" in flat.notes[0]
    np.testing.assert_array_equal(flat.groups_test["class"], flat.y_test)
    assert flat.defaults is DATASETS["digits"].defaults


def test_net_params_fill_what_is_unset_with_the_datasets_defaults():
    defaults = DATASETS["fashion_mnist"].defaults
    params = defaults.net_params()
    assert params["module__hidden_units"] == (128, 64) and params["max_epochs"] == 8
    assert params["optimizer__momentum"] == 0.9 and params["fine_tune_epochs"] == 0
    params = defaults.net_params("cnn", channels=(4,), lr=0.5, momentum=0.0)
    assert params["module"].__name__ == "SmallCNN" and params["module__channels"] == (4,)
    assert (params["lr"], params["optimizer__momentum"]) == (0.5, 0.0)
    assert "module__hidden_units" not in params
    assert DATASETS["utkface"].defaults.net_params(width=4)["module__width"] == 4
    with pytest.raises(DataOptionError, match="model must be one of mlp, cnn, resnet18"):
        defaults.net_params("vit")


@pytest.mark.parametrize(
    ("name", "options", "parameter", "message"),
    [
        ("adult", {"model": "cnn"}, "model", "model must be mlp for the adult dataset"),
        ("adult", {"sensitive": ["race", "age"]}, "sensitive",
         "sensitive must be among race, sex for the adult dataset; got age"),
        ("adult", {"sensitive": []}, "sensitive", "sensitive must name at least one column"),
        ("adult", {"sensitive": ["sex", "sex"]}, "sensitive", "sensitive names sex twice"),
        ("digits", {"sensitive": "race"}, "sensitive",
         "sensitive must be among class for the digits dataset (its groups are its classes)"),
        ("digits", {"target": "race"}, "target", "target applies to the utkface dataset only"),
        ("digits", {"minority_classes": [1], "minority_fraction": 0.1}, "minority_classes",
         "minority_classes applies to the fashion_mnist dataset only"),
        ("adult", {"data_path": "x"}, "data_path",
         "data_path applies to the fashion_mnist and utkface datasets only"),
        ("fashion_mnist", {"minority_fraction": 0.1}, "minority_classes",
         "minority_classes must be given with minority_fraction"),
        ("utkface", {}, "data_path", "data_path must be a folder holding UTKFace face images"),
        ("utkface", {"data_path": "x", "target": "age"}, "target",
         "target must be among race, gender, age_bin for the utkface dataset; got age"),
        ("utkface", {"data_path": "x", "sensitive": ["sex"]}, "sensitive",
         "sensitive must be among race, gender, age_bin for the utkface dataset; got sex"),
    ],
)
def test_options_are_checked_before_a_file_is_read(name, options, parameter, message,
                                                   monkeypatch):
    from fairprune_sk.datasets import _adult, _fashion_mnist, _utkface

    def no_load(*args, **kwargs):
        raise AssertionError("data were loaded")

    for module, reader in ((_adult, "load_adult"), (_fashion_mnist, "load_fashion_mnist"),
                           (_utkface, "load_utkface")):
        monkeypatch.setattr(module, reader, no_load)
    monkeypatch.setattr("sklearn.datasets.load_digits", no_load)
    with pytest.raises(DataOptionError) as info:
        load_dataset(name, **options)
    assert info.value.parameter == parameter
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("options", "match"),
    [({"n_train": 1}, "'n_train' parameter of load_dataset must be an int in the range"),
     ({"random_state": -1}, "'random_state' parameter"),
     ({"image_size": 4}, "'image_size' parameter")],
)
def test_argument_types_are_sklearn_constraints(options, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **options)
    with pytest.raises(ValueError, match="'name' parameter of load_dataset must be a str among"):
        load_dataset("mnist")


def test_utkface_split(utkface_folder):
    data = load_dataset("utkface", data_path=utkface_folder, target="gender",
                        sensitive=["race", "gender"], model="mlp", image_size=8)
    assert data.X_train.shape[1:] == (3 * 8 * 8,) and set(np.unique(data.y_train)) == {0, 1}
    assert data.grouping == "race & gender" and len(data.groups_test.drop_duplicates()) == 6
    assert len(data.y_train) + len(data.y_test) == 48 and len(data.y_test) == 12
    assert "stratified by label × group" in data.notes[0]
    default = load_dataset("utkface", data_path=utkface_folder, image_size=8)
    assert default.X_train.shape[1:] == (3, 8, 8) and default.sensitive == ("race",)
    assert "also the group" in default.notes[1]


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_utkface_bad_folder_names_data_path(tmp_path, make):
    folder = tmp_path / "faces"
    if make == "empty":
        folder.mkdir()
    elif make == "file":
        folder.write_text("x")
    with pytest.raises(DataOptionError, match=r"^data_path must be a folder holding UTKFace") \
            as info:
        load_dataset("utkface", data_path=folder)
    assert info.value.parameter == "data_path"


def test_fashion_mnist_missing_folder_names_data_path(tmp_path):
    with pytest.raises(DataOptionError, match="data_path must be a folder holding the four "
                                              "Fashion-MNIST IDX files") as info:
        load_dataset("fashion_mnist", data_path=tmp_path / "nowhere")
    assert "does not exist" in str(info.value) and "dataset-fashion-mnist" in str(info.value)
