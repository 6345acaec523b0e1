"""ExcessRiskFrame on a torch Dataset or DataLoader: every item layout gives the numbers of the
in-memory path, batch by batch, without holding the inputs."""

from __future__ import annotations

import copy
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from factories import make_fair, make_net
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fairprune_sk import ExcessRiskFrame


class Items(Dataset):
    """A map-style Dataset whose items are built by ``make(i)``."""

    def __init__(self, n, make):
        self.n, self.make = n, make

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.make(i)


def _compressed(dense):
    module = copy.deepcopy(dense)
    prune.l1_unstructured(module[0], "weight", amount=0.8)
    return module


def _assert_same(frame, expected):
    pd.testing.assert_frame_equal(frame.by_group, expected.by_group, check_names=False,
                                  rtol=1e-6, atol=1e-9)
    pd.testing.assert_series_equal(frame.overall, expected.overall, rtol=1e-6, atol=1e-9)


@pytest.fixture
def audit(digits, dense_module):
    """The pair of modules and the in-memory frame every stream must reproduce."""
    X, y, group = digits
    compressed = _compressed(dense_module)
    expected = ExcessRiskFrame(compressed, X, y, sensitive_features=group,
                               reference=dense_module)
    return compressed, dense_module, expected


def test_dataset_of_pairs_equals_arrays(digits, audit):
    X, y, group = digits
    compressed, dense, expected = audit
    data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    frame = ExcessRiskFrame(compressed, data, sensitive_features=group, reference=dense)
    _assert_same(frame, expected)
    np.testing.assert_array_equal(frame.pruning_identified_exemplars()["position"],
                                  expected.pruning_identified_exemplars()["position"])


def test_inputs_alone_take_y_from_the_caller(digits, audit):
    X, y, group = digits
    compressed, dense, expected = audit
    data = Items(len(X), lambda i: X[i])  # numpy items, collated into tensors
    frame = ExcessRiskFrame(compressed, data, y, sensitive_features=group, reference=dense,
                            batch_size=33)
    _assert_same(frame, expected)
    with pytest.raises(ValueError, match="^y is None and the items of X carry no label: pass "
                                         "y=, or make the items"):
        ExcessRiskFrame(compressed, data, sensitive_features=group, reference=dense)


def test_dict_items_carry_the_label_and_the_sensitive_features(digits, audit):
    X, y, group = digits
    compressed, dense, expected = audit
    data = Items(len(X), lambda i: {"X": X[i], "y": int(y[i]), "group": str(group[i])})
    frame = ExcessRiskFrame(compressed, data, sensitive_features="group", reference=dense)
    _assert_same(frame, expected)
    assert frame.by_group.index.name == "group"
    with pytest.raises(ValueError, match=r"sensitive_features names the field 'race', but the "
                                         r"items of X have no such field \(fields: \['X', "
                                         r"'group', 'y'\]\)"):
        ExcessRiskFrame(compressed, data, sensitive_features="race", reference=dense)


def test_several_item_fields_are_intersectional_groups(digits, audit):
    X, y, group = digits
    compressed, dense, _ = audit
    parity = np.where(np.arange(len(X)) % 2 == 0, "even", "odd")
    data = Items(len(X), lambda i: {"X": X[i], "y": y[i], "group": group[i],
                                    "parity": parity[i]})
    frame = ExcessRiskFrame(compressed, data, sensitive_features=("group", "parity"),
                            reference=dense)
    table = pd.DataFrame({"group": group, "parity": parity})
    expected = ExcessRiskFrame(compressed, X, y, sensitive_features=table, reference=dense)
    _assert_same(frame, expected)
    assert list(frame.by_group.index.names) == ["group", "parity"]


def test_a_dataloader_is_used_as_it_is(digits, audit):
    X, y, group = digits
    compressed, dense, expected = audit
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=50)
    _assert_same(ExcessRiskFrame(compressed, loader, sensitive_features=group, reference=dense),
                 expected)


def test_a_shuffling_loader_needs_everything_from_its_items(digits, audit):
    X, y, group = digits
    compressed, dense, expected = audit
    data = Items(len(X), lambda i: {"X": X[i], "y": y[i], "group": group[i]})
    shuffled = DataLoader(data, batch_size=64, shuffle=True)
    frame = ExcessRiskFrame(compressed, shuffled, sensitive_features="group", reference=dense)
    _assert_same(frame, expected)  # per-group numbers do not depend on the order
    with pytest.raises(ValueError, match="^X is a DataLoader that shuffles, so "
                                         "sensitive_features given as arrays cannot be aligned"):
        ExcessRiskFrame(compressed, shuffled, sensitive_features=group, reference=dense)


def test_arrays_beside_a_stream_must_have_its_length(digits, audit):
    X, y, group = digits
    compressed, dense, _ = audit
    data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    with pytest.raises(ValueError, match="^sensitive_features has 399 rows but X holds 400 "
                                         "samples"):
        ExcessRiskFrame(compressed, data, sensitive_features=group[:-1], reference=dense)
    with pytest.raises(ValueError, match="^y has 10 labels but X holds 400 samples"):
        ExcessRiskFrame(compressed, data, y[:10], sensitive_features=group, reference=dense)
    with pytest.raises(ValueError, match="names an item field, which only a torch Dataset or "
                                         "DataLoader of dict items has"):
        ExcessRiskFrame(compressed, X, y, sensitive_features="group", reference=dense)
    with pytest.raises(ValueError, match="^y is None: pass the true labels of X"):
        ExcessRiskFrame(compressed, X, sensitive_features=group, reference=dense)
    odd = Items(4, lambda i: (X[i], y[i], group[i]))
    with pytest.raises(ValueError, match=r"^items must be \(x, y\), x alone, or a dict; got "
                                         "items of 3 values"):
        ExcessRiskFrame(compressed, odd, sensitive_features=group[:4], reference=dense)


def test_sklearn_classifiers_read_streamed_batches(digits):
    X, y, group = digits
    dense = LogisticRegression(C=10.0, max_iter=500).fit(X, y)
    weak = LogisticRegression(C=0.01, max_iter=500).fit(X, y)
    expected = ExcessRiskFrame(weak, X, y, sensitive_features=group, reference=dense)
    data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    _assert_same(ExcessRiskFrame(weak, data, sensitive_features=group, reference=dense,
                                 batch_size=64), expected)


@pytest.mark.parametrize("make", [make_net, make_fair], ids=["PrunableNetClassifier",
                                                             "FairConstrainedNet"])
def test_our_nets_on_a_dataset_equal_their_predict_proba(digits, make):
    X, y, group = digits
    net = make(max_epochs=3)
    net = (net.fit(X, y, sensitive_features=group) if make is make_fair else net.fit(X, y))
    net.prune(0.6)
    net.module_.train()  # the audit must not depend on (nor change) the module's mode
    expected = ExcessRiskFrame(net, X, y, sensitive_features=group)
    data = Items(len(X), lambda i: {"X": X[i], "y": y[i], "group": group[i]})
    frame = ExcessRiskFrame(net, data, sensitive_features="group", batch_size=70)
    _assert_same(frame, expected)
    assert net.module_.training
    assert frame.fairness_violation > 0


def test_the_stream_never_holds_more_than_a_batch_of_inputs():
    """Only per-sample results grow with n: inputs and probabilities live one batch at a time."""
    image = (1, 28, 28)
    dense = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    compressed = copy.deepcopy(dense)
    prune.l1_unstructured(compressed[1], "weight", amount=0.8)

    def numpy_batches(items):  # numpy batches: tracemalloc sees every input array
        return np.stack([x for x, _ in items]), np.array([t for _, t in items])

    def peak(n):
        data = Items(n, lambda i: (np.random.default_rng(i).random(image, dtype=np.float32),
                                   i % 10))
        loader = DataLoader(data, batch_size=100, collate_fn=numpy_batches)
        group = np.where(np.arange(n) % 7 == 0, "minority", "majority")
        tracemalloc.start()
        ExcessRiskFrame(compressed, loader, sensitive_features=group, reference=dense)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(100)  # one-time allocations (caches, lazy imports) out of the comparison
    small, large = peak(1000), peak(4000)
    per_sample = (large - small) / 3000
    assert per_sample < 600  # an input alone is 3136 bytes
