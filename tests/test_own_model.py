"""The user's own model and data in FairConstrainedNet: a pretrained module (pruned by torch
prune, made smaller by Torch-Pruning, quantized) fine-tuned under a constraint against its θ*,
and torch Datasets streamed through the constrained loop."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch_pruning as tp
from factories import make_fair
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader, Dataset

from fairprune_sk import ExcessRiskFrame, FairConstrainedNet
from fairprune_sk.nets import NOT_TRAINABLE

CEAG = dict(constraint_target="accuracy_gap", pruning_rate=0.7, fine_tune_epochs=2, dual_update=3)


class Items(Dataset):
    """Dict items with the input, the label and the group as a field."""

    def __init__(self, X, y, group):
        self.X, self.y, self.group = X, y, group

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return {"X": torch.as_tensor(self.X[i]), "y": int(self.y[i]), "race": self.group[i]}


@pytest.fixture
def data(tabular):
    X, y, group = tabular
    return X.astype(np.float32), y, group.to_numpy()


def trained_module(X, y, width=16):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(torch.as_tensor(X)), torch.as_tensor(y)).backward()
        optimizer.step()
    return module


def excess_risk_gap(module, dense, X, y, group):
    """|R(a) − R| from the two modules' per-sample losses, by brute force."""
    with torch.no_grad():
        inputs, labels = torch.as_tensor(X), torch.as_tensor(y)
        excess = (nn.functional.cross_entropy(module(inputs), labels, reduction="none")
                  - nn.functional.cross_entropy(dense(inputs), labels, reduction="none"))
    excess = excess.double().numpy()
    return np.array([abs(excess[group == g].mean() - excess.mean()) for g in np.unique(group)])


def measured_gap(net, X, y, group):
    """The constraint the net measures in one epoch that leaves its weights as they are."""
    net.set_params(lr=0.0)
    net.fine_tune(X, y, 1, sensitive_features=group)
    return np.array(net.history[-1, "constraint_violation"])


@pytest.mark.parametrize("groups_as", ["field", "array"])
def test_a_dataset_trains_the_constrained_net_as_its_arrays(data, groups_as):
    X, y, group = data
    arrays = make_fair(**CEAG).fit(X, y, sensitive_features=group)
    items = Items(X, y, group)
    streamed = make_fair(**CEAG).fit(
        items, None, sensitive_features="race" if groups_as == "field" else group)
    assert streamed.multipliers_.index.tolist() == arrays.multipliers_.index.tolist()
    np.testing.assert_allclose(streamed.multipliers_, arrays.multipliers_, atol=1e-6)
    assert streamed.multipliers_.gt(0).any()  # the constraint acted
    np.testing.assert_allclose(streamed.predict_proba(items), arrays.predict_proba(X), atol=1e-5)
    arrays.fine_tune(X, y, 1, sensitive_features=group)
    streamed.fine_tune(items, None, 1, sensitive_features="race" if groups_as == "field"
                       else group)
    np.testing.assert_allclose(streamed.multipliers_, arrays.multipliers_, atol=1e-6)
    np.testing.assert_allclose(streamed.predict_proba(X), arrays.predict_proba(X), atol=1e-5)


def test_datasets_the_constrained_net_refuses(data):
    X, y, group = data
    items = Items(X, y, group)
    shuffled = DataLoader(items, batch_size=64, shuffle=True)
    with pytest.raises(ValueError, match="the per-sample groups of FairConstrainedNet cannot "
                                         "be matched"):
        make_fair(**CEAG).fit(shuffled, None, sensitive_features="race")
    with pytest.raises(ValueError, match="sensitive_features names the field 'sex'"):
        make_fair(**CEAG).fit(items, None, sensitive_features="sex")
    with pytest.raises(ValueError, match="constraint_split=0.3 needs in-memory arrays"):
        make_fair(**CEAG, constraint_split=0.3).fit(items, None, sensitive_features="race")
    net = make_fair(**CEAG).fit(DataLoader(items, batch_size=64), None, sensitive_features="race")
    assert net.history[-1, "phase"] == "fine_tune"  # a loader that does not shuffle is fine


def test_a_dataloader_counts_its_own_batches_for_the_dual_steps(data):
    # the loader's batch size, not the net's, sets how many batches a run has: the dual steps
    # every 3 batches and the tail average match the arrays batched the same way
    X, y, group = data
    ceag = dict(CEAG, average_tail=0.25, noise_margin=0.0)
    arrays = make_fair(**ceag, batch_size=16, iterator_train__shuffle=False)
    arrays.fit(X, y, sensitive_features=group)
    loader = DataLoader(Items(X, y, group), batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 38 batches per epoch: no "dual_update is too rare"
        streamed = make_fair(**ceag, batch_size=64).fit(loader, None, sensitive_features="race")
    assert streamed.multipliers_.gt(0).any()
    np.testing.assert_allclose(streamed.multipliers_, arrays.multipliers_, atol=1e-6)
    np.testing.assert_allclose(streamed.predict_proba(X), arrays.predict_proba(X), atol=1e-5)


def test_a_pretrained_module_fine_tunes_under_ceag_against_its_first_prune(data):
    X, y, group = data
    module = trained_module(X, y)
    own = FairConstrainedNet(module, classes=[0, 1], constraint_target="accuracy_gap",
                             dual_update=3, dual_lr=0.5, lr=0.05, batch_size=64).initialize()
    with pytest.raises(ValueError, match=r"FairConstrainedNet has no dense reference θ\* .*"
                                         "constraint_target='accuracy_gap' fine-tunes "
                                         "against it: prune it first"):
        own.fine_tune(X, y, 2, sensitive_features=group)
    assert len(own.history) == 0 and not hasattr(own, "dual_state_")
    own.prune(0.8).fine_tune(X, y, 2, sensitive_features=group)
    assert own.history[-1, "phase"] == "fine_tune"
    assert own.multipliers_.index.tolist() == ["a", "b", "c"] and own.multipliers_.gt(0).any()
    frame = ExcessRiskFrame(own, X, y, sensitive_features=group)
    assert frame.by_group["count"].sum() == len(y)


def test_never_pruned_under_after_is_an_error_not_plain_training(data):
    X, y, group = data
    own = FairConstrainedNet(trained_module(X, y), classes=[0, 1], pruning_rate=0.5).initialize()
    with pytest.raises(ValueError, match="constraint_phase='after' with pruning_rate=0.5 "
                                         "constrains only the fine-tuning of a pruned net"):
        own.fine_tune(X, y, 1, sensitive_features=group)
    # pruning_rate=0 constrains the dense training, as fit does
    own.set_params(pruning_rate=0.0).fine_tune(X, y, 1, sensitive_features=group)
    assert own.history[-1, "phase"] == "train" and own.multipliers_.gt(0).any()


def test_theta_star_of_a_torch_pruned_module_is_its_weight_orig(data):
    X, y, group = data
    module = trained_module(X, y)
    dense = copy.deepcopy(module)
    torch_prune.l1_unstructured(module[0], "weight", amount=0.6)
    module(torch.as_tensor(X[:2]))
    own = FairConstrainedNet(module, classes=[0, 1], constraint_target="excess_risk",
                             dual_update="epoch", batch_size=64).initialize()
    pruned = copy.deepcopy(own.module_)
    np.testing.assert_allclose(measured_gap(own, X, y, group),
                               excess_risk_gap(pruned, dense, X, y, group), atol=1e-5)


def test_a_torch_pruning_compaction_fine_tunes_against_the_big_module(data):
    X, y, group = data
    big = trained_module(X, y, width=32)
    small = copy.deepcopy(big)
    tp.pruner.MetaPruner(small, torch.zeros(1, 8), importance=tp.importance.MagnitudeImportance(),
                         pruning_ratio=0.5, ignored_layers=[small[2]]).step()
    assert small[0].out_features == 16
    own = FairConstrainedNet(small, classes=[0, 1], reference_module=big,
                             constraint_target="excess_risk", dual_update="epoch",
                             batch_size=64).initialize()
    np.testing.assert_allclose(measured_gap(own, X, y, group),
                               excess_risk_gap(small, big, X, y, group), atol=1e-5)
    ceag = FairConstrainedNet(small, classes=[0, 1], reference_module=big, lr=0.05,
                              constraint_target="accuracy_gap", dual_update=3, dual_lr=0.5)
    ceag.initialize().fine_tune(X, y, 2, sensitive_features=group)
    assert ceag.multipliers_.gt(0).any()


def test_a_quantized_module_is_audited_not_fine_tuned(data):
    X, y, group = data
    dense = trained_module(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = torch.ao.quantization.quantize_dynamic(copy.deepcopy(dense), {nn.Linear},
                                                       dtype=torch.qint8)
    own = FairConstrainedNet(small, classes=[0, 1], reference_module=dense,
                             constraint_target="accuracy_gap").initialize()
    frame = ExcessRiskFrame(own, X, y, sensitive_features=group)
    assert frame.by_group["count"].sum() == len(y)
    with pytest.raises(ValueError) as error:
        own.fine_tune(X, y, 1, sensitive_features=group)
    assert str(error.value) == NOT_TRAINABLE.format(
        name="FairConstrainedNet", action="train", what="quantized layers ['0', '2']")
