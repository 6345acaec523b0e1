"""Image models inside the nets: CNN / ResNet pruning and compact() on real (digits) images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
from fairprune_sk.models import ResNet18, SmallCNN
from fairprune_sk.pruning import layer_sparsity, prunable_tensors


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    X = (data.images[:600] / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8)
    return X, data.target[:600]


@pytest.fixture(scope="module")
def cnn(digits):
    X, y = digits
    net = PrunableNetClassifier(SmallCNN, module__channels=(4, 8), module__hidden_units=16,
                                max_epochs=4, lr=0.1, batch_size=64, random_state=0, verbose=0)
    return net.fit(X, y)


def test_cnn_learns_and_infers_input_shape(cnn, digits):
    X, y = digits
    assert cnn.module_.input_shape == (1, 8, 8)
    assert cnn.score(X, y) > 0.6


def test_cnn_global_pruning_reaches_rate_over_conv_and_linear(cnn, digits):
    X, y = digits
    pruned = copy.deepcopy(cnn).prune(0.7)
    names = [name for name, _, _ in prunable_tensors(pruned.module_)]
    assert any("features" in n for n in names) and any("classifier" in n for n in names)
    assert pruned.sparsity_ == pytest.approx(0.7, abs=1e-3)
    frame = ExcessRiskFrame(pruned, X, y, sensitive_features=y)  # groups = classes
    assert len(frame.by_group) == 10


def test_structured_pruning_zeroes_filters_and_compact_predicts_the_same(cnn, digits):
    X, _ = digits
    pruned = copy.deepcopy(cnn).prune(0.5, method="structured_l1")
    conv = pruned.module_.features[0]
    zero_filters = (conv.weight.detach().flatten(1).abs().sum(1) == 0).sum().item()
    assert zero_filters == 2  # half of 4 filters
    assert layer_sparsity(pruned.module_)[list(layer_sparsity(pruned.module_))[-1]] == 0.0
    small = pruned.compact()
    n_params = sum(p.numel() for p in small.module_.parameters())
    assert n_params < sum(p.numel() for p in cnn.module_.parameters())
    np.testing.assert_allclose(small.predict_proba(X), pruned.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(small.predict(X), pruned.predict(X))


def test_resnet18_prunes_inside_the_net(digits):
    X, y = digits
    net = PrunableNetClassifier(ResNet18, module__width=4, max_epochs=1, lr=0.05, batch_size=128,
                                pruning_rate=0.8, fine_tune_epochs=1, random_state=0, verbose=0)
    net.fit(X[:256], y[:256])
    assert net.sparsity_ == pytest.approx(0.8, abs=1e-3)
    assert torch.isfinite(torch.as_tensor(net.predict_proba(X[:20]))).all()


def test_resnet18_structured_compact_predicts_the_same(digits):
    X, y = digits
    net = PrunableNetClassifier(ResNet18, module__width=4, max_epochs=1, lr=0.05, batch_size=32,
                                random_state=0, verbose=0)
    net.fit(X[:64], y[:64]).prune(0.5, method="structured_l2")
    small = net.compact()  # residual blocks: Torch-Pruning's dependency graph couples channels
    n_params = sum(p.numel() for p in small.module_.parameters())
    assert n_params < sum(p.numel() for p in net.module_.parameters())
    assert small.module_.layer1[0].conv1.out_channels == 2  # half of width 4, inside a block
    np.testing.assert_allclose(small.predict_proba(X[:32]), net.predict_proba(X[:32]), atol=1e-5)
    np.testing.assert_array_equal(small.predict(X[:32]), net.predict(X[:32]))
