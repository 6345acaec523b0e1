"""``device="cuda"``: fit, prune, audit, diagnostics and the mitigation (skipped without a GPU).

Each test runs the same seeded pipeline on the GPU and compares with the CPU where the numbers
must agree (float32 kernels differ slightly between devices, hence the tolerances).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from fairprune_sk import (
    ExcessRiskFrame,
    FairConstrainedNet,
    GroupDiagnostics,
    PrunableNetClassifier,
)
from fairprune_sk.models import MLP

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=400, n_features=8, n_informative=5, random_state=0)
    group = np.random.default_rng(0).choice(np.array(["a", "b", "c"]), size=len(y),
                                            p=[0.7, 0.2, 0.1])
    return X.astype(np.float32), y, group


def _net(device: str, **params):
    defaults = dict(module__hidden_units=(16, 16), max_epochs=3, lr=0.1, batch_size=64,
                    pruning_rate=0.5, fine_tune_epochs=1, random_state=0, verbose=0)
    return PrunableNetClassifier(MLP, device=device, **{**defaults, **params})


def test_fit_and_prune_keep_the_module_on_the_gpu(data):
    X, y, _ = data
    net = _net("cuda").fit(X, y)
    assert {p.device.type for p in net.module_.parameters()} == {"cuda"}
    assert {m.device.type for _, m in net.module_.named_buffers()} == {"cuda"}  # masks
    proba = net.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert net.sparsity_ == pytest.approx(0.5, abs=0.01)


def test_gpu_audit_matches_the_same_net_on_the_cpu(data):
    X, y, group = data
    net = _net("cuda").fit(X, y)
    on_gpu = ExcessRiskFrame(net, X, y, sensitive_features=group).by_group
    net.module_.to("cpu")
    net.set_params(device="cpu")
    on_cpu = ExcessRiskFrame(net, X, y, sensitive_features=group).by_group
    np.testing.assert_allclose(on_gpu.to_numpy(float), on_cpu.to_numpy(float), atol=1e-4)


def test_gpu_diagnostics(data):
    X, y, group = data
    net = _net("cuda").fit(X, y)
    diag = GroupDiagnostics(net, X, y, sensitive_features=group, random_state=0)
    table = diag.by_group
    assert np.isfinite(table["gradient_norm"]).all()
    assert np.isfinite(table["hessian_max_eig"]).all()


def test_gpu_ceag_fine_tuning(data):
    X, y, group = data
    fair = FairConstrainedNet(MLP, module__hidden_units=(16, 16), max_epochs=3, lr=0.1,
                              batch_size=64, pruning_rate=0.7, fine_tune_epochs=2,
                              constraint_target="accuracy_gap", device="cuda", random_state=0,
                              verbose=0)
    fair.fit(X, y, sensitive_features=group)
    assert {p.device.type for p in fair.module_.parameters()} == {"cuda"}
    assert np.isfinite(fair.multipliers_.to_numpy()).all()
    assert np.isfinite(fair.predict_proba(X)).all()
