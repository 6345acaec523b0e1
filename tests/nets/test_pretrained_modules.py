"""A pretrained torch module in PrunableNetClassifier: initialize() instead of fit, θ* taken at
the first prune, from torch prune's weight_orig, or from a reference module; quantized modules
audited but not trained."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
import torch_pruning as tp
from factories import make_net
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn.utils import prune as torch_prune

from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
from fairprune_sk.nets import NOT_TRAINABLE


def softmax(module, X):
    with torch.no_grad():
        logits = module(torch.as_tensor(X, dtype=torch.float32))
    return torch.softmax(logits, dim=1).double().numpy()


def brute_excess_risk(y, groups, proba_pruned, proba_dense):
    """R(a) from the two models' probabilities: mean log loss difference per group."""
    rows = np.arange(len(y))
    excess = -np.log(proba_pruned[rows, y]) + np.log(proba_dense[rows, y])
    return {g: excess[groups == g].mean() for g in np.unique(groups)}


@pytest.fixture
def data(tabular):
    X, y, group = tabular
    return X.astype(np.float32), y, group.to_numpy()


@pytest.fixture
def module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def trained(module, X, y):
    """The user's own training loop."""
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(X), y).backward()
        optimizer.step()
    return module


def test_initialize_with_a_module_instance_makes_a_fitted_net(data, module):
    X, y, _ = data
    net = PrunableNetClassifier(module, classes=["no", "yes"]).initialize()
    check_is_fitted(net)
    check_is_fitted(net, ["classes_", "n_features_in_", "sparsity_"])
    assert net.n_features_in_ == 8 and net.classes_.tolist() == ["no", "yes"]
    assert net.sparsity_ == 0.0 and net.dense_state_dict_ is None
    np.testing.assert_allclose(net.predict_proba(X), softmax(module, X), atol=1e-6)
    assert set(net.predict(X)) <= {"no", "yes"}
    with pytest.raises(ValueError, match="X has 3 features, but PrunableNetClassifier is "
                                         "expecting 8 features"):
        net.predict_proba(X[:, :3])


def test_n_features_is_left_unset_where_the_structure_does_not_tell():
    class TwoBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Linear(8, 4)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

    net = PrunableNetClassifier(TwoBranches(), classes=[0, 1]).initialize()
    assert not hasattr(net, "n_features_in_")
    assert net.predict_proba(np.zeros((3, 8), np.float32)).shape == (3, 2)


def test_theta_star_is_the_module_at_the_first_prune(data, module):
    X, y, group = data
    module = trained(module, X, y)
    dense = copy.deepcopy(module)
    net = PrunableNetClassifier(module, classes=[0, 1], lr=0.05).initialize()
    net.prune(0.6)
    for key, value in dense.state_dict().items():  # the user's module is not pruned in place
        assert torch.equal(module.state_dict()[key], value)
    np.testing.assert_allclose(net.dense_reference().predict_proba(X), softmax(dense, X),
                               atol=1e-6)
    net.fine_tune(X, y, 2).prune(0.8)  # θ* stays the one of the first prune
    np.testing.assert_allclose(net.dense_reference().predict_proba(X), softmax(dense, X),
                               atol=1e-6)
    frame = ExcessRiskFrame(net, X, y, sensitive_features=group)
    expected = brute_excess_risk(y, group, net.predict_proba(X), softmax(dense, X))
    for g, value in expected.items():
        assert frame.by_group.loc[g, "excess_risk"] == pytest.approx(value, abs=1e-6)
    assert frame.by_group["count"].sum() == len(y)


def test_pruned_copy_of_an_initialized_net_leaves_it_alone(data, module):
    X, y, _ = data
    net = PrunableNetClassifier(module, classes=[0, 1]).initialize()
    before = {k: v.clone() for k, v in net.module_.state_dict().items()}
    other = net.pruned_copy(0.7, X=X, y=y, fine_tune_epochs=1)
    assert round(other.sparsity_, 2) == 0.7 and net.sparsity_ == 0.0
    assert net.dense_state_dict_ is None and len(net.history) == 0
    for key, value in before.items():
        assert torch.equal(net.module_.state_dict()[key], value)


def test_a_torch_pruned_module_keeps_its_masks_and_gives_theta_star_from_weight_orig(data, module):
    X, y, _ = data
    module = trained(module, X, y)
    torch_prune.l1_unstructured(module[0], "weight", amount=0.5)
    torch_prune.random_unstructured(module[2], "weight", amount=0.25)
    module(torch.as_tensor(X[:4]))  # a forward pass: the pruned weight is a non-leaf tensor now
    masks = {name: module[i].weight_mask.clone() for i, name in ((0, "0"), (2, "2"))}
    dense = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    dense[0].weight.data = module[0].weight_orig.detach().clone()
    dense[2].weight.data = module[2].weight_orig.detach().clone()
    dense[0].bias.data, dense[2].bias.data = module[0].bias.data, module[2].bias.data

    net = PrunableNetClassifier(module, classes=[0, 1], lr=0.05).initialize()
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    assert net.sparsity_ == pytest.approx(zeros / sum(m.numel() for m in masks.values()))
    np.testing.assert_allclose(net.dense_reference().predict_proba(X), softmax(dense, X),
                               atol=1e-6)
    assert clone(net).get_params()["module"] is not module  # the hooked module copies
    net.fine_tune(X, y, 2)
    assert net.history[-1, "phase"] == "fine_tune"
    for i, name in ((0, "0"), (2, "2")):
        weight = net.module_[i].weight
        assert torch.all(weight[masks[name] == 0] == 0)  # zeros stay zero
    net.prune(0.8)
    for i, name in ((0, "0"), (2, "2")):  # the user's masks are kept inside the new ones
        assert torch.all(net.module_[i].weight_mask[masks[name] == 0] == 0)
    assert round(net.sparsity_, 2) == 0.8


def test_a_reference_module_is_theta_star_of_a_smaller_module(data, module):
    X, y, group = data
    big = trained(module, X, y)
    small = copy.deepcopy(big)
    pruner = tp.pruner.MetaPruner(
        small, torch.zeros(1, 8), importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5, ignored_layers=[small[2]],
    )
    pruner.step()
    assert small[0].out_features == 8  # structurally smaller
    net = PrunableNetClassifier(small, classes=[0, 1], reference_module=big, lr=0.05).initialize()
    np.testing.assert_allclose(net.dense_reference().predict_proba(X), softmax(big, X), atol=1e-6)
    big_before = {k: v.clone() for k, v in big.state_dict().items()}
    trained_params = {id(p) for g in net.optimizer_.param_groups for p in g["params"]}
    assert trained_params == {id(p) for p in net.module_.parameters()}  # big is not trained
    net.fine_tune(X, y, 2)
    assert net.history[-1, "phase"] == "fine_tune"
    for key, value in big_before.items():
        assert torch.equal(big.state_dict()[key], value)
    frame = ExcessRiskFrame(net, X, y, sensitive_features=group)
    expected = brute_excess_risk(y, group, net.predict_proba(X), softmax(big, X))
    for g, value in expected.items():
        assert frame.by_group.loc[g, "excess_risk"] == pytest.approx(value, abs=1e-6)
    # a parameter like any other: cloned, set, pickled, never one of skorch's trained modules
    assert clone(net).reference_module is not big
    net.set_params(reference_module=copy.deepcopy(big))
    assert net._modules == ["module"]
    copied = pickle.loads(pickle.dumps(net))
    np.testing.assert_allclose(copied.predict_proba(X), net.predict_proba(X))


def test_reference_module_must_be_a_module(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="'reference_module' parameter of "
                                         "PrunableNetClassifier must be"):
        make_net(reference_module="big").fit(X, y)


def quantized(module):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that it moves to torchao
        return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)


def test_a_quantized_module_is_audited_not_trained(data, module):
    X, y, group = data
    dense = trained(module, X, y)
    small = quantized(copy.deepcopy(dense))
    net = PrunableNetClassifier(small, classes=[0, 1], batch_size=len(X)).initialize()
    assert net.optimizer_ is None and net.sparsity_ == 0.0 and net.n_features_in_ == 8
    with torch.no_grad():  # one batch of all rows: the int8 activation ranges of that batch
        expected = torch.softmax(small(torch.as_tensor(X)), dim=1).double().numpy()
    np.testing.assert_allclose(net.predict_proba(X), expected, atol=1e-6)
    frame = ExcessRiskFrame(net, X, y, sensitive_features=group, reference=dense,
                            batch_size=len(X))
    assert frame.by_group["count"].sum() == len(y)
    for action, call in [
        ("fine_tune", lambda: net.fine_tune(X, y, 1)),
        ("partial_fit", lambda: net.partial_fit(X, y)),
        ("prune", lambda: net.prune(0.5)),
        ("fit", lambda: net.fit(X, y)),
        ("partial_fit", lambda: PrunableNetClassifier(small, classes=[0, 1]).partial_fit(X, y)),
    ]:
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value) == NOT_TRAINABLE.format(
            name="PrunableNetClassifier", action=action, what="quantized layers ['0', '2']")
    assert len(net.history) == 0 and net.sparsity_ == 0.0
