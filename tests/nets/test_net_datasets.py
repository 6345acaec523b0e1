"""torch Datasets and DataLoaders in PrunableNetClassifier: streamed through skorch's loop, the
same numbers as the arrays they hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import make_net
from skorch.dataset import ValidSplit
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from fairprune_sk.nets._stream import NO_LABELS, SHUFFLING_LOADER


class Items(Dataset):
    """The rows of arrays as items of one of the kinds the nets read; counts the reads."""

    def __init__(self, X, y=None, *, kind="pair", **fields):
        self.X, self.y, self.kind, self.fields = X, y, kind, fields
        self.reads = 0

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.reads += 1
        x = torch.as_tensor(self.X[i], dtype=torch.float64)  # cast to float32 by the net
        if self.kind == "x":
            return x
        if self.kind == "pair":
            return x, self.y[i]
        return {"X": x, "y": self.y[i], **{k: v[i] for k, v in self.fields.items()}}


class Stream(IterableDataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __iter__(self):
        for x, label in zip(self.X, self.y, strict=True):
            yield torch.as_tensor(x, dtype=torch.float32), label


@pytest.fixture
def data(tabular):
    X, y, _ = tabular
    return X, y


@pytest.mark.parametrize("kind", ["pair", "dict"])
def test_a_dataset_trains_and_predicts_as_its_arrays(data, kind):
    X, y = data
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    params = dict(pruning_rate=0.6, fine_tune_epochs=2)
    arrays = make_net(**params).fit(X, y, sample_weight=weight)
    items = Items(X, y, kind=kind)
    streamed = make_net(**params).fit(items, None, sample_weight=weight)
    assert streamed.classes_.tolist() == arrays.classes_.tolist()
    assert streamed.n_features_in_ == 8 and streamed.input_shape_ == (8,)
    np.testing.assert_allclose(streamed.predict_proba(items), arrays.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(streamed.predict_proba(X), arrays.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(streamed.dense_reference().predict_proba(items),
                               arrays.dense_reference().predict_proba(X), atol=1e-6)
    # partial_fit and fine_tune continue both the same way
    arrays.partial_fit(X, y).fine_tune(X, y, 1)
    streamed.partial_fit(items, None).fine_tune(items, None, 1)
    np.testing.assert_allclose(streamed.predict_proba(X), arrays.predict_proba(X), atol=1e-6)
    assert streamed.history[-1, "phase"] == "fine_tune"


def test_the_classes_come_from_one_pass_over_the_labels_unless_given(data):
    X, y = data
    labels = np.array(["no", "yes"])[y]
    items = Items(X, labels)
    net = make_net(max_epochs=2).fit(items, None)
    assert net.classes_.tolist() == ["no", "yes"]
    passes = 2 + 1  # the epochs and the pass over the labels (the first item for the shape)
    assert items.reads == passes * len(y) + 1
    items = Items(X, labels)
    make_net(max_epochs=2, classes=["yes", "no"]).fit(items, None)
    assert items.reads == 2 * len(y) + 1


def test_labels_given_beside_a_dataset_and_their_errors(data):
    X, y = data
    inputs = Items(X, kind="x")
    net = make_net(max_epochs=2).fit(inputs, y)
    np.testing.assert_allclose(net.predict_proba(inputs), make_net(max_epochs=2).fit(X, y)
                               .predict_proba(X), atol=1e-6)
    with pytest.raises(ValueError, match="y is None and the items of X carry no label"):
        make_net().fit(inputs, None)
    assert NO_LABELS.startswith("y is None")
    with pytest.raises(ValueError, match="y has 10 values but X holds 600 items"):
        make_net().fit(inputs, y[:10])
    with pytest.raises(ValueError, match=r"y contains labels not seen in fit: \[7\]"):
        net.fine_tune(Items(X, np.where(y == 1, 7, 0)), None, 1)


def test_a_dataloader_is_iterated_as_it_is(data):
    X, y = data
    dataset = TensorDataset(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y))
    ordered = DataLoader(dataset, batch_size=64)
    np.testing.assert_allclose(  # a loader that does not shuffle: the same batches as arrays
        make_net(iterator_train__shuffle=False).fit(ordered, None).predict_proba(X),
        make_net(iterator_train__shuffle=False).fit(X, y).predict_proba(X), atol=1e-6)
    shuffled = DataLoader(dataset, batch_size=32, shuffle=True)
    net = make_net(max_epochs=2).fit(shuffled, None)
    assert net.history[-1, "train_batch_count"] == len(shuffled)  # its own batch size
    assert net.predict_proba(ordered).shape == (len(y), 2)
    with pytest.raises(ValueError, match="the predictions cannot be matched"):
        net.predict_proba(shuffled)
    with pytest.raises(ValueError, match="per-sample sample_weight cannot be matched"):
        net.fine_tune(shuffled, None, 1, sample_weight=np.arange(len(y)) + 1.0)
    assert SHUFFLING_LOADER.startswith("X is a DataLoader that shuffles")
    with pytest.raises(ValueError, match="train_split cannot split"):
        make_net(train_split=ValidSplit(0.2)).fit(ordered, None)


def test_an_iterable_dataset_and_a_validation_split(data):
    X, y = data
    net = make_net(max_epochs=2, classes=[0, 1]).fit(Stream(X, y), None)
    assert net.history[-1, "train_batch_count"] == int(np.ceil(len(y) / 64))
    net = make_net(max_epochs=2, train_split=ValidSplit(0.2, stratified=True, random_state=0))
    net.fit(Items(X, y), None)  # skorch's split of the stream: stratified on its labels
    assert 0.0 <= net.history[-1, "valid_acc"] <= 1.0


def test_a_failed_fit_on_a_dataset_leaves_the_net_as_it_was(fitted_net, data):
    X, y = data
    before = {k: v.clone() for k, v in fitted_net.module_.state_dict().items()}
    n_rows = len(fitted_net.history)
    with pytest.raises(ValueError):
        fitted_net.fine_tune(Items(X, kind="x"), None, 1)
    assert len(fitted_net.history) == n_rows
    for key, value in before.items():
        assert torch.equal(fitted_net.module_.state_dict()[key], value)
