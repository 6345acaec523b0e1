"""ExcessRiskFrame audits any model: torch modules however compressed (torch prune,
Torch-Pruning, int8 dynamic quantization), sklearn classifiers, our nets; every number against
a brute-force computation from the two models' softmax outputs."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch_pruning as tp
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.nn.utils import prune

from fairprune_sk import ExcessRiskFrame


def _softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _module_proba(module, X):
    with torch.no_grad():
        return _softmax(module(torch.from_numpy(X)).double().numpy())


def _brute_force(y_index, proba_pruned, proba_dense, groups):
    """R(a) and ψ_g per group: means of per-sample cross-entropies and hits, group by group."""
    rows = np.arange(len(y_index))
    proba_pruned, proba_dense = (np.asarray(p, dtype=np.float64) for p in (proba_pruned,
                                                                           proba_dense))
    loss_pruned = -np.log(np.maximum(proba_pruned[rows, y_index], 1e-12))
    loss_dense = -np.log(np.maximum(proba_dense[rows, y_index], 1e-12))
    hit_pruned = proba_pruned.argmax(axis=1) == y_index
    hit_dense = proba_dense.argmax(axis=1) == y_index
    overall_drop = hit_dense.mean() - hit_pruned.mean()
    risk, psi = {}, {}
    for g in sorted(set(groups)):
        m = groups == g
        risk[g] = loss_pruned[m].mean() - loss_dense[m].mean()
        psi[g] = (hit_dense[m].mean() - hit_pruned[m].mean()) - overall_drop
    return risk, psi


def _assert_matches(frame, risk, psi, rtol=1e-9):
    for g in risk:
        assert frame.by_group.loc[g, "excess_risk"] == pytest.approx(risk[g], rel=rtol, abs=1e-12)
        assert frame.by_group.loc[g, "excess_accuracy_gap"] == pytest.approx(psi[g], abs=1e-12)
    assert frame.fairness_violation == pytest.approx(
        max(risk.values()) - min(risk.values()), rel=rtol, abs=1e-12
    )


def _torch_pruned(dense):
    module = copy.deepcopy(dense)
    for layer in module:
        if isinstance(layer, nn.Linear):
            prune.l1_unstructured(layer, "weight", amount=0.7)
    assert hasattr(module[0], "weight_orig")  # the reparametrisation stays on
    return module


def _torch_pruning_shrunk(dense):
    module = copy.deepcopy(dense)
    pruner = tp.pruner.MagnitudePruner(
        module, torch.zeros(2, 64), importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5, ignored_layers=[module[4]],
    )
    pruner.step()
    assert module[0].out_features == 16  # physically smaller
    return module


def _quantized(dense):
    with warnings.catch_warnings():  # torch.ao's deprecation notices
        warnings.simplefilter("ignore")
        module = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(dense), {nn.Linear}, dtype=torch.qint8
        )
    assert not list(module.parameters())  # no float parameters left
    return module


@pytest.mark.parametrize("compress", [_torch_pruned, _torch_pruning_shrunk, _quantized],
                         ids=["torch_prune", "torch_pruning", "int8_dynamic"])
def test_compressed_modules_match_brute_force(digits, dense_module, compress):
    X, y, group = digits
    compressed = compress(dense_module)
    # one batch: a dynamically quantized module's activation ranges depend on the batch
    frame = ExcessRiskFrame(compressed, X, y, sensitive_features=group,
                            reference=dense_module, batch_size=len(X))
    risk, psi = _brute_force(y, _module_proba(compressed, X), _module_proba(dense_module, X),
                             group)
    _assert_matches(frame, risk, psi)
    assert list(frame.by_group["count"]) == [int((group == g).sum()) for g in "abc"]


def test_sklearn_classifiers_match_brute_force(digits):
    X, y, group = digits
    dense = LogisticRegression(C=10.0, max_iter=500).fit(X, y)
    weak = LogisticRegression(C=0.01, max_iter=500).fit(X, y)
    frame = ExcessRiskFrame(weak, X, y, sensitive_features=group, reference=dense)
    risk, psi = _brute_force(y, weak.predict_proba(X), dense.predict_proba(X), group)
    _assert_matches(frame, risk, psi)


def test_a_module_against_a_classifier_takes_the_classifiers_labels(digits, dense_module):
    X, y, group = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    labels = names[y]
    order = np.argsort(names)  # LogisticRegression sorts its classes_: reorder the logits
    permuted = copy.deepcopy(dense_module)
    with torch.no_grad():
        permuted[4].weight.copy_(dense_module[4].weight[order])
        permuted[4].bias.copy_(dense_module[4].bias[order])
    reference = LogisticRegression(C=10.0, max_iter=500).fit(X, labels)
    frame = ExcessRiskFrame(permuted, X, labels, sensitive_features=group, reference=reference,
                            batch_size=len(X))
    y_index = np.searchsorted(reference.classes_, labels)
    risk, psi = _brute_force(y_index, _module_proba(permuted, X), reference.predict_proba(X),
                             group)
    _assert_matches(frame, risk, psi)
    exemplars = frame.pruning_identified_exemplars()
    assert set(exemplars["pred_pruned"]) <= set(names)


def test_classes_name_a_modules_outputs(digits, dense_module):
    X, y, group = digits
    compressed = _torch_pruned(dense_module)
    names = np.array([f"digit {k}" for k in range(10)])
    named = ExcessRiskFrame(compressed, X, names[y], sensitive_features=group,
                            reference=dense_module, classes=names)
    plain = ExcessRiskFrame(compressed, X, y, sensitive_features=group, reference=dense_module)
    np.testing.assert_allclose(named.by_group.to_numpy(float), plain.by_group.to_numpy(float))
    assert set(named.pruning_identified_exemplars()["y_true"]) <= set(names)
    with pytest.raises(ValueError, match=r"y contains labels that are not in classes \(default "
                                         r"0..K-1 for the K outputs of a torch module\)"):
        ExcessRiskFrame(compressed, X, names[y], sensitive_features=group,
                        reference=dense_module)
    with pytest.raises(ValueError, match=r"softmax of model\(X\) has 10 columns but there are 3 "
                                         "classes"):
        ExcessRiskFrame(compressed, X, y, sensitive_features=group, reference=dense_module,
                        classes=[0, 1, 2])


def test_a_single_logit_is_the_second_class(digits):
    X, y, group = digits
    y = (y >= 5).astype(int)
    torch.manual_seed(1)
    dense = nn.Linear(64, 1)
    compressed = copy.deepcopy(dense)
    with torch.no_grad():
        compressed.weight[:, ::2] = 0.0
    frame = ExcessRiskFrame(compressed, X, y, sensitive_features=group, reference=dense)

    def proba(module):
        with torch.no_grad():
            p = 1.0 / (1.0 + np.exp(-module(torch.from_numpy(X)).double().numpy()))
        return np.hstack([1.0 - p, p])

    risk, psi = _brute_force(y, proba(compressed), proba(dense), group)
    _assert_matches(frame, risk, psi)


def test_batches_and_device_give_the_same_numbers(digits, dense_module):
    X, y, group = digits
    compressed = _torch_pruned(dense_module)
    whole = ExcessRiskFrame(compressed, X, y, sensitive_features=group, reference=dense_module,
                            batch_size=len(X))
    for options in ({"batch_size": 7}, {"device": "cpu"}, {"device": torch.device("cpu")}):
        frame = ExcessRiskFrame(compressed, X, y, sensitive_features=group,
                                reference=dense_module, **options)
        np.testing.assert_allclose(frame.by_group.to_numpy(float), whole.by_group.to_numpy(float),
                                   rtol=1e-6, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_moves_modules_there_and_back(digits, dense_module):
    X, y, group = digits
    compressed = _torch_pruned(dense_module)
    on_cpu = ExcessRiskFrame(compressed, X, y, sensitive_features=group, reference=dense_module)
    on_gpu = ExcessRiskFrame(compressed, X, y, sensitive_features=group, reference=dense_module,
                             device="cuda")
    np.testing.assert_allclose(on_gpu.by_group.to_numpy(float), on_cpu.by_group.to_numpy(float),
                               rtol=1e-4, atol=1e-6)
    assert all(p.device.type == "cpu" for p in compressed.parameters())
    assert all(p.device.type == "cpu" for p in dense_module.parameters())


def test_modules_run_in_eval_mode_and_keep_their_modes(digits, dense_module):
    X, y, group = digits
    dense = nn.Sequential(nn.Dropout(0.5), *copy.deepcopy(dense_module))
    compressed = nn.Sequential(nn.Dropout(0.5), *_torch_pruned(dense_module))
    dense.train()
    compressed.train()
    compressed[3].eval()  # a submodule in another mode than its parent
    modes = [m.training for m in compressed.modules()]
    frame = ExcessRiskFrame(compressed, X, y, sensitive_features=group, reference=dense)
    assert [m.training for m in compressed.modules()] == modes
    assert dense.training
    assert all(p.grad is None for p in compressed.parameters())
    dense.eval()
    compressed.eval()
    risk, psi = _brute_force(y, _module_proba(compressed, X), _module_proba(dense, X), group)
    _assert_matches(frame, risk, psi, rtol=1e-6)  # dropout off: the eval-mode outputs


def test_modes_are_restored_when_the_audit_fails(digits, dense_module):
    X, y, group = digits
    dense_module.train()
    with pytest.raises(ValueError, match="y contains labels"):
        ExcessRiskFrame(_torch_pruned(dense_module), X, y + 100, sensitive_features=group,
                        reference=dense_module)
    assert all(m.training for m in dense_module.modules())


def test_a_module_needs_a_reference_and_the_error_names_it(digits, dense_module):
    X, y, group = digits
    with pytest.raises(ValueError, match=r"^a torch.nn.Module keeps no dense reference; pass "
                                         r"reference= \(the dense, uncompressed model"):
        ExcessRiskFrame(dense_module, X, y, sensitive_features=group)
    with pytest.raises(ValueError, match="^LogisticRegression keeps no dense reference; pass "
                                         "reference="):
        ExcessRiskFrame(LogisticRegression().fit(X, y), X, y, sensitive_features=group)


def test_unfitted_or_mismatched_classifiers_are_errors(digits, dense_module):
    X, y, group = digits
    with pytest.raises(ValueError, match=r"^reference \(LogisticRegression\) has predict_proba "
                                         "but no classes_: pass a fitted classifier"):
        ExcessRiskFrame(dense_module, X, y, sensitive_features=group,
                        reference=LogisticRegression())
    odd = LogisticRegression(max_iter=200).fit(X[y < 5], y[y < 5])
    full = LogisticRegression(max_iter=200).fit(X, y)
    with pytest.raises(ValueError, match=r"^reference.classes_ \[0, 1, 2, 3, 4\] differ from "
                                         r"model.classes_ \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]"):
        ExcessRiskFrame(full, X, y, sensitive_features=group, reference=odd)
    with pytest.raises(ValueError, match=r"^classes \[9, 8, 7, 6, 5, 4, 3, 2, 1, 0\] differ from "
                                         r"model.classes_"):
        ExcessRiskFrame(full, X, y, sensitive_features=group, reference=full,
                        classes=np.arange(10)[::-1])
    with pytest.raises(ValueError, match="'model' parameter of ExcessRiskFrame must be an "
                                         "object implementing 'predict_proba' or an instance "
                                         "of 'torch.nn.modules.module.Module'"):
        ExcessRiskFrame("net", X, y, sensitive_features=group, reference=full)
    with pytest.raises(ValueError, match=r"'batch_size' parameter of ExcessRiskFrame must be an "
                                         r"int in the range \[1, inf\)"):
        ExcessRiskFrame(full, X, y, sensitive_features=group, reference=full, batch_size=0)


def test_a_modules_bad_outputs_are_named(digits):
    X, y, group = digits

    class Broken(nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), 10)
            out[3, 0] = float("nan")
            return out

    with pytest.raises(ValueError, match=r"^softmax of model\(X\) contains NaN or infinite "
                                         r"values \(first in row 3\)"):
        ExcessRiskFrame(Broken(), X, y, sensitive_features=group, reference=Broken())


def test_in_memory_sensitive_features_may_be_a_tuple_of_labels(digits, dense_module):
    X, y, group = digits
    compressed = _torch_pruned(dense_module)
    as_tuple = ExcessRiskFrame(compressed, X, y, sensitive_features=tuple(group),
                               reference=dense_module)
    as_array = ExcessRiskFrame(compressed, X, y, sensitive_features=group,
                               reference=dense_module)
    np.testing.assert_array_equal(as_tuple.by_group.to_numpy(), as_array.by_group.to_numpy())
