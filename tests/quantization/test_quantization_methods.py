"""The benchmark's methods with ``compress="quantize"``, pretrained quantized modules, and the
explanation of a pruned-then-quantized net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import make_net
from torch import nn

from fairprune_sk import ExcessRiskFrame, FairConstrainedNet, PrunableNetClassifier
from fairprune_sk.benchmark.methods import check_compression, fit_dense_reference, run_method
from fairprune_sk.datasets import load_dataset
from fairprune_sk.diagnostics import GroupDiagnostics
from fairprune_sk.models import MLP
from fairprune_sk.pruning import effective_state_dict, prune_module
from fairprune_sk.quantization import is_quantized, quantize_module, quantized_bits

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:fairlearn.*",
                                        "ignore:dual_update=20 is more than")

NET = dict(module=MLP, module__hidden_units=(8,), max_epochs=2, lr=0.1, batch_size=64,
           fine_tune_epochs=2, verbose=0)


@pytest.fixture(scope="module")
def adult():
    split = load_dataset("adult", sensitive=["sex"], n_train=400)
    return dict(X_train=split.X_train, y_train=split.y_train, A_train=split.groups_train,
                X_test=split.X_test[:300], y_test=split.y_test[:300],
                A_test=split.groups_test.iloc[:300].reset_index(drop=True))


@pytest.mark.parametrize("method", ["none", "gap_and_loss", "threshold"])
def test_run_method_quantizes_the_common_dense_reference(adult, method):
    dense = fit_dense_reference(adult["X_train"], adult["y_train"], seed=0, net_params=NET)
    result = run_method(method, **adult, rate=3, seed=0, net_params=NET, dense=dense,
                        compress="quantize")
    net = result.model.estimator if method == "threshold" else result.model
    assert net.quantized_bits_ == 3 and is_quantized(net.module_)
    # audited against the common θ*: its dense accuracy is the dense reference's
    assert result.summary["rate"] == 3
    np.testing.assert_allclose(result.summary["accuracy_dense"],
                               dense.score(adult["X_test"], adult["y_test"]))
    assert not is_quantized(dense.module_)  # θ* itself is untouched
    if method == "gap_and_loss":  # θ* of the constrained net is the common dense reference
        state = effective_state_dict(dense.module_)
        assert all(torch.equal(net.dense_state_dict_[key], value) for key, value in
                   state.items())
        assert net.history[-1, "phase"] == "fine_tune" and len(net.history) == 2


def test_check_compression_names_what_is_wrong():
    assert check_compression("prune", ["eg"], [0.5]) == [0.5]
    with pytest.raises(ValueError, match="method 'fair_before' changes the dense net"):
        check_compression("quantize", ["none", "fair_before"], [4])
    with pytest.raises(ValueError, match=r"'rates' parameter of compress='quantize' must be "
                                         r"an int in the range \[2, 8\]. Got 0.5"):
        check_compression("quantize", ["none"], [0.5])
    with pytest.raises(ValueError, match="compress must be one of"):
        check_compression("zip", ["none"], [4])


def test_a_module_given_quantized_keeps_its_grid_and_its_float_theta_star(tabular):
    X, y, group = tabular
    module = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    torch.manual_seed(0)
    floats = {key: value.clone() for key, value in module.state_dict().items()}
    quantize_module(prune_module(module, 0.5), 3)
    net = FairConstrainedNet(module, classes=[0, 1], constraint_target="accuracy_gap",
                             max_epochs=1, lr=0.1).initialize()
    assert net.quantized_bits_ == 3
    masked = {key: value.clone() for key, value in effective_state_dict(module).items()}
    for key, value in net.dense_state_dict_.items():  # θ*: the float weights, pruned included
        assert torch.equal(value, floats[key])
    net.fine_tune(X, y, 2, sensitive_features=group)
    assert quantized_bits(net.module_) == {"0": 3, "2": 3}
    assert not torch.equal(effective_state_dict(net.module_)["0.weight"], masked["0.weight"])
    frame = ExcessRiskFrame(net, X, y, sensitive_features=group)
    assert np.isfinite(frame.fairness_violation)


@pytest.mark.filterwarnings("ignore:the top Hessian eigenvalue")
def test_the_distance_of_a_pruned_then_quantized_net_is_to_the_dense_theta_star(tabular):
    X, y, group = tabular
    net = make_net().fit(X, y)
    dense = effective_state_dict(net.module_)
    net.prune(0.6).quantize(2)
    quantized = effective_state_dict(net.module_)
    by_hand = sum(float(((quantized[k] - dense[k]) ** 2).sum()) for k in dense) ** 0.5
    diagnostics = GroupDiagnostics(net, X, y, sensitive_features=group, max_iter=5,
                                   random_state=0)
    assert diagnostics.by_group["param_distance"].iloc[0] == pytest.approx(by_hand, rel=1e-4)
    assert isinstance(net, PrunableNetClassifier)
