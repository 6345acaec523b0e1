"""Quantized nets: ``PrunableNetClassifier.quantize`` / ``quantized_copy``, θ*, quantization-aware
fine-tuning (plain, CEAG, gap_and_loss), the audit and the explanation of a quantized net, copies
and persistence."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from factories import make_fair, make_net
from sklearn.base import clone

from fairprune_sk import ExcessRiskFrame
from fairprune_sk.diagnostics import GroupDiagnostics
from fairprune_sk.pruning import effective_state_dict, is_pruned
from fairprune_sk.quantization import is_quantized, quantization_error, quantized_bits

LAYERS = ("layers.0", "layers.2", "layers.4")


def _max_distinct_per_channel(net) -> int:
    state = effective_state_dict(net.module_)
    return max(len(torch.unique(row)) for layer in LAYERS for row in state[f"{layer}.weight"])


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_quantize_puts_the_net_on_the_grid_through_fine_tuning_and_keeps_theta_star(
        tabular, bits):
    X, y, _ = tabular
    net = make_net().fit(X, y)
    dense = copy.deepcopy(effective_state_dict(net.module_))
    net.quantize(bits)
    assert net.quantized_bits_ == bits and net.activation_bits_ is None
    assert _same_state(net.dense_state_dict_, dense)  # θ* is the float net
    assert _max_distinct_per_channel(net) <= 2**bits
    before = net.predict_proba(X)
    net.fine_tune(X, y, 2)
    assert _max_distinct_per_channel(net) <= 2**bits
    assert not np.allclose(net.predict_proba(X), before)  # quantization-aware training moved it
    assert _same_state(net.dense_state_dict_, dense)
    assert net.history[-1, "phase"] == "fine_tune"
    np.testing.assert_allclose(net.dense_reference().predict_proba(X),
                               make_net().fit(X, y).predict_proba(X))


def test_prune_then_quantize_keeps_the_sparsity_and_the_dense_theta_star(tabular):
    X, y, _ = tabular
    net = make_net().fit(X, y)
    dense = copy.deepcopy(effective_state_dict(net.module_))
    net.prune(0.7)
    masks = {layer: net.module_.get_submodule(layer).weight_mask.clone() for layer in LAYERS}
    net.quantize(3).fine_tune(X, y, 2)
    assert net.sparsity_ >= 0.7 - 0.01
    state = effective_state_dict(net.module_)
    for layer, mask in masks.items():
        assert torch.all(state[f"{layer}.weight"][mask == 0] == 0)
    assert _same_state(net.dense_state_dict_, dense)  # θ* the dense unpruned weights
    with pytest.raises(ValueError, match="prune first, then quantize"):
        net.prune(0.9)
    with pytest.raises(ValueError, match="compact first, then quantize"):
        net.compact()
    assert net.sparsity_ >= 0.7 - 0.01 and net.quantized_bits_ == 3


def test_the_audit_of_a_quantized_net_against_brute_force(tabular):
    X, y, group = tabular
    net = make_net().fit(X, y).quantize(2)
    frame = ExcessRiskFrame(net, X, y, sensitive_features=group)

    def group_losses(module):
        module.eval()
        with torch.no_grad():
            logits = module(torch.as_tensor(X, dtype=torch.float32)).double()
        losses = -torch.log_softmax(logits, dim=1)[torch.arange(len(y)), torch.as_tensor(y)]
        return pd.Series(losses.numpy()).groupby(group.to_numpy()).mean()

    quantized = group_losses(net.module_)
    reference = make_net().fit(X, y).module_  # θ*: the same float net
    excess = quantized - group_losses(reference)
    np.testing.assert_allclose(frame.by_group["excess_risk"].to_numpy(), excess.to_numpy(),
                               rtol=1e-5, atol=1e-6)
    assert frame.fairness_violation == pytest.approx(excess.max() - excess.min(), rel=1e-5)
    assert frame.fairness_violation > 0


@pytest.mark.filterwarnings("ignore:the top Hessian eigenvalue")
def test_the_explanation_uses_the_quantization_error_as_the_distance(tabular):
    X, y, group = tabular
    net = make_net().fit(X, y).quantize(3)
    diagnostics = GroupDiagnostics(net, X, y, sensitive_features=group, max_iter=5,
                                   random_state=0)
    distance = diagnostics.by_group["param_distance"].iloc[0]
    assert distance == pytest.approx(quantization_error(net.module_), rel=1e-4)
    assert (diagnostics.by_group["bound"] > 0).all()


def test_copies_share_no_state_and_keep_the_grid(tabular):
    X, y, _ = tabular
    net = make_net().fit(X, y).prune(0.5).quantize(4)
    net.fine_tune(X, y, 1)
    proba, state = net.predict_proba(X), copy.deepcopy(net.module_.state_dict())
    copies = [net.quantized_copy(3), copy.deepcopy(net), pickle.loads(pickle.dumps(net))]
    for other in copies[1:]:
        np.testing.assert_array_equal(other.predict_proba(X), proba)
        assert other.quantized_bits_ == 4 and quantized_bits(other.module_) == {
            layer: 4 for layer in LAYERS}
    assert copies[0].quantized_bits_ == 3
    for other in copies:
        other.fine_tune(X, y, 2)
        assert _same_state(other.dense_state_dict_, net.dense_state_dict_)
    np.testing.assert_array_equal(net.predict_proba(X), proba)  # the original is untouched
    assert _same_state(net.module_.state_dict(), state)
    reference = net.dense_reference()
    assert reference.quantized_bits_ is None and not is_quantized(reference.module_)
    cloned = clone(net)
    assert not hasattr(cloned, "quantized_bits_")
    assert cloned.fit(X, y).quantized_bits_ is None


def test_save_and_load_params_reapply_the_grid(tabular, tmp_path):
    X, y, group = tabular
    params = dict(module__n_features=8, module__n_classes=2, classes=[0, 1])
    net = make_net(**params).fit(X, y).prune(0.5).quantize(3, activations=8)
    net.fine_tune(X, y, 1)
    files = {"f_params": tmp_path / "w.pt", "f_optimizer": tmp_path / "opt.pt",
             "f_history": tmp_path / "h.json", "f_dense_state_dict": tmp_path / "dense.pt"}
    net.save_params(**files)
    loaded = make_net(**params).initialize()
    loaded.load_params(**files)
    assert (loaded.quantized_bits_, loaded.activation_bits_) == (3, 8)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    frame, expected = (ExcessRiskFrame(m, X, y, sensitive_features=group) for m in (loaded, net))
    assert frame.fairness_violation == expected.fairness_violation
    net.fine_tune(X, y, 1)
    loaded.fine_tune(X, y, 1)  # same optimizer state: training continues identically
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    # a float state loaded into the quantized net takes its grid off
    float_net = make_net(**params).fit(X, y)
    float_net.save_params(f_params=tmp_path / "float.pt")
    loaded.load_params(f_params=tmp_path / "float.pt")
    assert loaded.quantized_bits_ is None and not is_pruned(loaded.module_)
    np.testing.assert_array_equal(loaded.predict_proba(X), float_net.predict_proba(X))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 1}, r"'bits' parameter of PrunableNetClassifier.quantize must be an int in "
                      r"the range \[2, 8\]. Got 1"),
        ({"bits": 16}, r"'bits' parameter of PrunableNetClassifier.quantize"),
        ({"bits": 4, "activations": 1}, r"'activations' parameter of "
                                        r"PrunableNetClassifier.quantize"),
        ({"bits": 4, "keep_float": ("layers.9",)}, r"'keep_float' parameter of quantize_module"),
    ],
)
def test_a_failed_quantize_names_the_argument_and_leaves_the_net_as_it_was(
        fitted_net, tabular, kwargs, message):
    X, _, _ = tabular
    proba = fitted_net.predict_proba(X)
    with pytest.raises(ValueError, match=message):
        fitted_net.quantize(**kwargs)
    assert fitted_net.quantized_bits_ is None and fitted_net.dense_state_dict_ is None
    assert not is_quantized(fitted_net.module_)
    np.testing.assert_array_equal(fitted_net.predict_proba(X), proba)


@pytest.mark.filterwarnings("ignore:dual_update=20 is more than")
@pytest.mark.parametrize("target", ["accuracy_gap", "gap_and_loss"])
def test_constrained_fine_tuning_of_a_quantized_net(tabular, target):
    X, y, group = tabular
    fair = make_fair(constraint_target=target, dual_lr="auto", max_epochs=3)
    fair.fit(X, y, sensitive_features=group)
    dense = copy.deepcopy(fair.dense_state_dict_ if fair.dense_state_dict_ is not None
                          else effective_state_dict(fair.module_))
    fair.quantize(2)
    plain = make_net(max_epochs=3).fit(X, y).quantize(2)
    fair.fine_tune(X, y, 3, sensitive_features=group)
    plain.fine_tune(X, y, 3)
    assert _max_distinct_per_channel(fair) <= 4
    assert _same_state(fair.dense_state_dict_, dense)
    assert np.any(fair.multipliers_.to_numpy() > 0)  # the constraint acted
    assert not np.allclose(fair.predict_proba(X), plain.predict_proba(X))
    copy_ = fair.quantized_copy(3).fine_tune(X, y, 1, sensitive_features=group)
    assert copy_.quantized_bits_ == 3 and fair.quantized_bits_ == 2


def test_fit_with_quantization_bits_trains_quantizes_and_fine_tunes_on_the_grid(tabular):
    X, y, _ = tabular
    one_call = make_net(quantization_bits=3, fine_tune_epochs=2).fit(X, y)
    dense = make_net().fit(X, y)
    assert one_call.quantized_bits_ == 3 and _max_distinct_per_channel(one_call) <= 2**3
    # θ*: the dense float net, trained exactly as without quantization_bits
    assert _same_state(one_call.dense_state_dict_, effective_state_dict(dense.module_))
    assert [row["phase"] for row in one_call.history].count("fine_tune") == 2
    quantized_only = dense.quantized_copy(3)  # the grid without the fine-tuning
    assert not np.allclose(one_call.predict_proba(X), quantized_only.predict_proba(X))
    assert clone(one_call).get_params()["quantization_bits"] == 3
    with pytest.raises(ValueError, match="'quantization_bits' parameter"):
        make_net(quantization_bits=9).fit(X, y)


@pytest.mark.filterwarnings("ignore:dual_update=20 is more than")
def test_fair_net_with_quantization_bits_constrains_the_quantization_aware_fine_tuning(
        tabular):
    X, y, group = tabular
    fair = make_fair(constraint_target="gap_and_loss", dual_lr="auto", quantization_bits=2,
                     fine_tune_epochs=3, max_epochs=3).fit(X, y, sensitive_features=group)
    phases = [(row["phase"], row["constraint_violation"]) for row in fair.history]
    assert all(v is None for p, v in phases if p == "train")  # dense θ*: unconstrained
    assert all(v is not None for p, v in phases if p == "fine_tune")
    assert fair.quantized_bits_ == 2 and np.any(fair.multipliers_.to_numpy() > 0)
    plain = make_fair(constraint_phase="none", quantization_bits=2, fine_tune_epochs=3,
                      max_epochs=3).fit(X, y, sensitive_features=group)
    np.testing.assert_allclose(fair.dense_reference().predict_proba(X),
                               plain.dense_reference().predict_proba(X))  # the same θ*
    assert not np.allclose(fair.predict_proba(X), plain.predict_proba(X))
