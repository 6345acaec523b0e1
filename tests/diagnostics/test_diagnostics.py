"""Tests of fairprune_sk.diagnostics: HVPs, eigenvalues, gradient norms, GroupDiagnostics."""

from __future__ import annotations

import copy
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from skorch import NeuralNetClassifier
from torch import nn
from torch.func import functional_call
from torch.nn.utils import prune

from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
from fairprune_sk.diagnostics import (
    GroupDiagnostics,
    boundary_closeness,
    group_gradient_norms,
    hessian_vector_product,
    output_gradient_norms,
    top_hessian_eigenvalue,
)
from fairprune_sk.metrics import FRAME_COLUMNS, group_codes
from fairprune_sk.models import MLP, SmallCNN
from fairprune_sk.pruning import effective_state_dict

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tiny problems gain nothing from intra-op threads, and on a busy machine every
    parallel region waits for a descheduled thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# helpers: a tiny float64 net (59 parameters) and its dense Hessian
# --------------------------------------------------------------------------------------------
def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3)).double()


@pytest.fixture
def tiny_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, size=40)
    groups = (np.arange(40) % 3 == 0).astype(int)  # 14 samples in group 1, 26 in group 0
    return X, y, groups


def mean_loss_of_flat(module: nn.Module, X: np.ndarray, y: np.ndarray):
    """J(θ; D) as a function of the flattened parameters (the reference for the tests)."""
    names = [n for n, _ in module.named_parameters()]
    shapes = [p.shape for p in module.parameters()]
    numels = [p.numel() for p in module.parameters()]
    x, t = torch.as_tensor(X), torch.as_tensor(y)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = [c.view(s) for c, s in zip(torch.split(flat, numels), shapes, strict=True)]
        logits = functional_call(module, dict(zip(names, parts, strict=True)), (x,))
        return nn.functional.cross_entropy(logits, t)

    flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    return loss, flat


def dense_hessian(module, X, y) -> torch.Tensor:
    loss, flat = mean_loss_of_flat(module, X, y)
    return torch.autograd.functional.hessian(loss, flat)


# --------------------------------------------------------------------------------------------
# Hessian-vector products and the top eigenvalue
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [7, 1024])
def test_hvp_equals_dense_hessian_times_vector(tiny_data, batch_size):
    X, y, _ = tiny_data
    module = tiny_net()
    H = dense_hessian(module, X, y)
    v = torch.randn(H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    hv = hessian_vector_product(module, X, y, v, batch_size=batch_size)
    torch.testing.assert_close(hv, H @ v, rtol=1e-10, atol=1e-12)


def eigsh_top(module, X, y) -> float:
    """The oracle: scipy's eigsh (ARPACK, largest algebraic) on the public HVP."""
    n = sum(p.numel() for p in module.parameters())

    def matvec(v):
        return hessian_vector_product(module, X, y, torch.as_tensor(v.ravel())).numpy()

    operator = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).normal(size=n)
    return float(eigsh(operator, k=1, which="LA", v0=v0, tol=1e-12,
                       return_eigenvectors=False)[0])


def test_top_eigenvalue_matches_dense_hessian_and_eigsh(tiny_data):
    X, y, _ = tiny_data
    module = tiny_net()
    eigenvalues = np.linalg.eigvalsh(dense_hessian(module, X, y).numpy())
    assert eigenvalues[-1] == pytest.approx(eigsh_top(module, X, y), rel=1e-10)
    # In this setup the largest eigenvalue is also the largest in magnitude, so power
    # iteration (largest |λ|) and Lanczos (largest λ) must both find it.
    assert eigenvalues.max() > abs(eigenvalues.min())
    for method in ("lanczos", "power"):
        top = top_hessian_eigenvalue(
            module, X, y, method=method, max_iter=1000, tol=1e-10, random_state=0
        )
        assert top == pytest.approx(eigenvalues.max(), rel=1e-7), method


@pytest.mark.parametrize("tol", [1e-2, 1e-4, 1e-6])
def test_lanczos_error_is_within_tol(tiny_data, tol):
    """The documented stopping rule: |λ̂ − λ_max| <= tol · |λ_max|."""
    X, y, groups = tiny_data
    for g in (0, 1):
        module, rows = tiny_net(seed=g), groups == g
        exact = np.linalg.eigvalsh(dense_hessian(module, X[rows], y[rows]).numpy()).max()
        for seed in range(3):
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConvergenceWarning)  # it must converge
                top = top_hessian_eigenvalue(module, X[rows], y[rows], tol=tol,
                                             random_state=seed)
            assert abs(top - exact) <= tol * abs(exact)


class HalfQuadratic(nn.Module):
    """Logits ``[0, f]`` with ``f = ½ pᵀ A p`` for every sample (``p`` the only parameter).

    With every label 0 the loss is ``log(1 + e^f)``; at ``p = 0`` its gradient is 0 and its
    Hessian ``σ(0) A = A / 2`` exactly, so the solvers see a known symmetric matrix.
    """

    def __init__(self, A: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A))
        self.p = nn.Parameter(torch.zeros(len(A), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 0.5 * self.p @ self.A @ self.p
        return torch.stack([torch.zeros_like(f), f]).expand(len(x), 2)


def test_lanczos_finds_largest_algebraic_and_power_largest_magnitude():
    # A Hessian whose most negative eigenvalue dominates in magnitude: A / 2 with
    # eig(A) = -5 and 29 values in [0, 3]
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    A = Q @ np.diag(np.concatenate([[-5.0], np.linspace(0.0, 3.0, 29)])) @ Q.T
    module = HalfQuadratic(A)
    X, y = np.zeros((6, 1)), np.zeros(6, dtype=int)
    np.testing.assert_allclose(dense_hessian(module, X, y).numpy(), A / 2, atol=1e-12)
    lanczos = top_hessian_eigenvalue(module, X, y, max_iter=100, tol=1e-10, random_state=0)
    power = top_hessian_eigenvalue(module, X, y, method="power", max_iter=2000, tol=1e-12,
                                   random_state=0)
    assert lanczos == pytest.approx(1.5, rel=1e-8)  # λ_max(A) / 2
    assert power == pytest.approx(-2.5, rel=1e-6)  # the eigenvalue of largest |λ|, signed


def test_top_eigenvalue_warns_when_not_converged(tiny_data):
    X, y, _ = tiny_data
    with pytest.warns(ConvergenceWarning, match="max_iter=2") as record:
        top_hessian_eigenvalue(tiny_net(), X, y, max_iter=2, tol=1e-12, random_state=0)
    assert record[0].filename == __file__  # the warning points at the caller's line


def test_top_eigenvalue_is_reproducible_with_random_state(tiny_data):
    X, y, _ = tiny_data
    a = top_hessian_eigenvalue(tiny_net(), X, y, max_iter=5, tol=0, random_state=3)
    b = top_hessian_eigenvalue(tiny_net(), X, y, max_iter=5, tol=0, random_state=3)
    assert a == b


# --------------------------------------------------------------------------------------------
# group gradient norms
# --------------------------------------------------------------------------------------------
def test_group_gradient_norms_match_full_batch_autograd(tiny_data):
    X, y, groups = tiny_data
    module = tiny_net()
    expected = []
    for g in (0, 1):
        mask = groups == g
        loss, flat = mean_loss_of_flat(module, X[mask], y[mask])
        flat.requires_grad_(True)
        (gradient,) = torch.autograd.grad(loss(flat), flat)
        expected.append(float(gradient.norm()))
    full = group_gradient_norms(module, X, y, groups, batch_size=1024)
    small = group_gradient_norms(module, X, y, groups, batch_size=7)
    np.testing.assert_allclose(full, expected, rtol=1e-10)
    np.testing.assert_allclose(small, expected, rtol=1e-10)


def test_proposition1_smaller_group_has_larger_gradient_norm():
    # Two groups drawn from the *same* distribution (so their accuracy is the same up to
    # noise) but of sizes 900 and 100. A linear model trained to a stationary point of the
    # full-data loss has n_0 g_0 + n_1 g_1 = 0 (the full gradient is their weighted mean),
    # hence ‖g_1‖ / ‖g_0‖ = n_0 / n_1 = 9: the size effect of Proposition 1 in its pure form.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=1.0, size=1000) > 0).astype(int)
    groups = np.r_[np.zeros(900, dtype=int), np.ones(100, dtype=int)]
    torch.manual_seed(0)
    module = nn.Linear(2, 2).double()
    x, t = torch.as_tensor(X), torch.as_tensor(y)
    optimizer = torch.optim.LBFGS(module.parameters(), max_iter=200, tolerance_grad=1e-12,
                                  tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(module(x), t)
        loss.backward()
        return loss

    optimizer.step(closure)
    module.zero_grad(set_to_none=True)
    with torch.no_grad():
        correct = (module(x).argmax(1) == t).numpy()
    accuracy = [correct[groups == g].mean() for g in (0, 1)]
    assert abs(accuracy[0] - accuracy[1]) < 0.05  # comparable accuracy

    norms = group_gradient_norms(module, X, y, groups)
    assert norms[1] > norms[0]
    assert norms[1] / norms[0] == pytest.approx(9.0, rel=1e-3)


# --------------------------------------------------------------------------------------------
# the caller's module is left alone
# --------------------------------------------------------------------------------------------
def _mode_and_grads(module: nn.Module) -> tuple[list[bool], list[torch.Tensor | None]]:
    """Each submodule's train flag and a copy of each parameter's .grad (None kept)."""
    return (
        [m.training for m in module.modules()],
        [None if p.grad is None else p.grad.detach().clone() for p in module.parameters()],
    )


def _assert_mode_and_grads_kept(module: nn.Module, before) -> None:
    modes, grads = _mode_and_grads(module)
    assert modes == before[0]
    assert len(grads) == len(before[1])
    for got, expected in zip(grads, before[1], strict=True):
        if expected is None:
            assert got is None
        else:
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def _caller_module(X, y, *, with_grads: bool, pruned: bool) -> nn.Module:
    """A module in train mode with one submodule frozen in eval mode, as a caller may leave it."""
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3)
    ).double()
    if pruned:
        prune.l1_unstructured(module[0], "weight", amount=0.5)
    if with_grads:  # a half-done training step: gradients the caller still needs
        nn.functional.cross_entropy(module(torch.as_tensor(X)), torch.as_tensor(y)).backward()
        module[4].bias.grad = None  # a mix of present and absent gradients
    module.train()
    module[1].eval()  # a submodule the caller froze: must stay in eval mode
    return module


@pytest.mark.parametrize("pruned", [False, True], ids=["plain", "pruned"])
@pytest.mark.parametrize("with_grads", [False, True], ids=["no_grads", "grads"])
def test_functions_leave_mode_parameters_and_grad_alone(tiny_data, with_grads, pruned):
    X, y, groups = tiny_data
    module = _caller_module(X, y, with_grads=with_grads, pruned=pruned)
    before = copy.deepcopy(module.state_dict())
    kept = _mode_and_grads(module)
    n_params = sum(p.numel() for p in module.parameters())

    norms_a = group_gradient_norms(module, X, y, groups)
    norms_b = group_gradient_norms(module, X, y, groups)
    np.testing.assert_array_equal(norms_a, norms_b)  # dropout is off: deterministic
    hessian_vector_product(module, X, y, torch.ones(n_params, dtype=torch.float64))
    top_hessian_eigenvalue(module, X, y, max_iter=3, tol=0, random_state=0)
    output_gradient_norms(module, X)
    # and at another point θ (params=): the caller's module is still the one evaluated
    params = {k: v + 0.1 for k, v in effective_state_dict(module).items()}
    group_gradient_norms(module, X, y, groups, params=params)

    _assert_mode_and_grads_kept(module, kept)
    for name, value in module.state_dict().items():  # parameters and BN running stats
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_functions_restore_mode_and_grads_after_an_error(tiny_data):
    X, y, groups = tiny_data
    module = _caller_module(X, y, with_grads=True, pruned=False)
    kept = _mode_and_grads(module)
    with pytest.raises(ValueError, match="class index 5"):
        group_gradient_norms(module, X, np.where(y == 2, 5, y), groups)
    _assert_mode_and_grads_kept(module, kept)


def test_pruned_module_is_evaluated_at_its_masked_weights(tiny_data):
    X, y, groups = tiny_data
    module = tiny_net()
    prune.l1_unstructured(module[0], "weight", amount=0.5)
    module(torch.as_tensor(X))  # after a forward, a naive deepcopy would fail
    plain = tiny_net()
    plain.load_state_dict(
        {"0.weight": module[0].weight.detach(), "0.bias": module[0].bias.detach(),
         "2.weight": module[2].weight.detach(), "2.bias": module[2].bias.detach()}
    )
    orig = module[0].weight_orig.detach().clone()

    np.testing.assert_allclose(
        group_gradient_norms(module, X, y, groups), group_gradient_norms(plain, X, y, groups),
        rtol=1e-12,
    )
    # The vector is ordered like module.named_parameters(): bias, weight (for weight_orig), ...
    names = [n for n, _ in module.named_parameters()]
    assert names[:2] == ["0.bias", "0.weight_orig"]
    v = torch.randn(59, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sizes = dict(module.named_parameters())
    parts = dict(zip(names, torch.split(v, [sizes[n].numel() for n in names]), strict=True))
    v_plain = torch.cat([parts["0.weight_orig"], parts["0.bias"], parts["2.weight"],
                         parts["2.bias"]])
    hv = hessian_vector_product(module, X, y, v)
    hv_plain = hessian_vector_product(plain, X, y, v_plain)
    torch.testing.assert_close(hv[:8], hv_plain[24:32])  # 0.bias
    assert prune.is_pruned(module)
    torch.testing.assert_close(module[0].weight_orig, orig, rtol=0, atol=0)
    assert module[0].weight_orig.grad is None


def test_params_evaluates_at_another_point(tiny_data):
    X, y, groups = tiny_data
    module, other = tiny_net(0), tiny_net(1)
    np.testing.assert_allclose(
        group_gradient_norms(module, X, y, groups, params=other.state_dict()),
        group_gradient_norms(other, X, y, groups),
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="does not know"):
        group_gradient_norms(module, X, y, groups, params={**other.state_dict(), "foo": 1.0})
    with pytest.raises(ValueError, match="lacks the trainable parameters"):
        group_gradient_norms(module, X, y, groups, params={"0.weight": other[0].weight})
    with pytest.raises(ValueError, match="has shape"):
        group_gradient_norms(module, X, y, groups,
                             params={**other.state_dict(), "0.bias": torch.zeros(3)})


# --------------------------------------------------------------------------------------------
# per-sample quantities
# --------------------------------------------------------------------------------------------
def test_boundary_closeness_values():
    np.testing.assert_allclose(
        boundary_closeness([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]]), [0.25, 0.09, 0.0]
    )
    f = np.array([0.2, 0.5, 0.7])  # binary: f(1 - f), from P(class 1) or from both columns
    np.testing.assert_allclose(boundary_closeness(f), f * (1 - f))
    np.testing.assert_allclose(boundary_closeness(np.c_[1 - f, f]), f * (1 - f))
    np.testing.assert_allclose(boundary_closeness([[0.2, 0.5, 0.3]]), [0.25])  # p_max(1-p_max)
    with pytest.raises(ValueError, match="probabilities"):
        boundary_closeness([[2.0, -1.0]])
    with pytest.raises(ValueError, match="shape"):
        boundary_closeness(np.ones((2, 2, 2)))


@pytest.mark.parametrize("output", ["proba", "margin"])
def test_output_gradient_norms_match_per_sample_autograd(tiny_data, output):
    X, _, _ = tiny_data
    module = tiny_net()
    expected = []
    for row in X[:10]:
        module.zero_grad(set_to_none=True)
        logits = module(torch.as_tensor(row[None]))[0]
        k = int(logits.argmax())
        if output == "proba":
            f = torch.softmax(logits, 0)[k]
        else:
            f = logits[k] - torch.cat([logits[:k], logits[k + 1:]]).max()
        f.backward()
        expected.append(float(torch.cat([p.grad.reshape(-1) for p in module.parameters()]).norm()))
    module.zero_grad(set_to_none=True)
    got = output_gradient_norms(module, X[:10], batch_size=3, output=output)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_cnn_with_batch_norm_works():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=12)
    module = SmallCNN(input_shape=(1, 8, 8), n_classes=3, channels=(4, 8), hidden_units=8)
    assert output_gradient_norms(module, X, batch_size=5).shape == (12,)
    top = top_hessian_eigenvalue(module, X, y, max_iter=4, tol=0, batch_size=5, random_state=0)
    assert np.isfinite(top)
    assert module.training and all(p.grad is None for p in module.parameters())


def test_core_input_errors(tiny_data):
    X, y, groups = tiny_data
    module = tiny_net()
    with pytest.raises(ValueError, match="y has 39 samples but X has 40"):
        group_gradient_norms(module, X, y[:-1], groups)
    with pytest.raises(ValueError, match="class index 5"):
        group_gradient_norms(module, X, np.full(40, 5), groups)
    with pytest.raises(ValueError, match="integer class indices"):
        group_gradient_norms(module, X, y.astype(float), groups)
    with pytest.raises(ValueError, match="group codes"):
        group_gradient_norms(module, X, y, groups - 1)
    with pytest.raises(ValueError, match="shape"):
        group_gradient_norms(module, X[:, 0], y, groups)
    with pytest.raises(ValueError, match="NaN"):
        group_gradient_norms(module, np.full_like(X, np.nan), y, groups)
    with pytest.raises(ValueError, match="one entry per trainable parameter"):
        hessian_vector_product(module, X, y, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=(
            r"The 'method' parameter of top_hessian_eigenvalue must be a str among "
            r"\{'(lanczos|power)', '(lanczos|power)'\}. Got 'arnoldi' instead.")):
        top_hessian_eigenvalue(module, X, y, method="arnoldi")
    with pytest.raises(ValueError, match=(
            r"The 'max_iter' parameter of top_hessian_eigenvalue must be an int in the range "
            r"\[1, inf\). Got 0 instead.")):
        top_hessian_eigenvalue(module, X, y, max_iter=0)
    with pytest.raises(ValueError, match="'tol' parameter of top_hessian_eigenvalue"):
        top_hessian_eigenvalue(module, X, y, tol=float("nan"))
    with pytest.raises(ValueError, match="'random_state' parameter of top_hessian_eigenvalue"):
        top_hessian_eigenvalue(module, X, y, random_state="seed")
    with pytest.raises(ValueError, match="'batch_size' parameter of group_gradient_norms"):
        group_gradient_norms(module, X, y, groups, batch_size=0)
    with pytest.raises(ValueError, match="'output' parameter of output_gradient_norms"):
        output_gradient_norms(module, X, output="logit")
    with pytest.raises(TypeError, match=(
            r"The 'module' parameter of group_gradient_norms must be an instance of "
            r"'torch.nn.modules.module.Module'. Got 'not a module' instead.")):
        group_gradient_norms("not a module", X, y, groups)
    with pytest.raises(TypeError, match=(
            r"The 'params' parameter of hessian_vector_product must be an instance of "
            r"'collections.abc.Mapping' or None")):
        hessian_vector_product(module, X, y, torch.ones(59, dtype=torch.float64), params=[1])


# --------------------------------------------------------------------------------------------
# GroupDiagnostics
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audit_data():
    rng = np.random.default_rng(1)
    n = 300
    race = rng.choice(np.array(["w", "b", "o"]), size=n, p=[0.6, 0.3, 0.1])
    sex = rng.choice(np.array(["f", "m"]), size=n)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    X[race == "o", 1] += 1.0  # a shifted minority
    y = (X[:, 0] + X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return X, y, pd.DataFrame({"race": race, "sex": sex})


@pytest.fixture(scope="module")
def skorch_pruned(audit_data):
    """A plain skorch net, pruned by hand, with its dense reference set by hand."""
    X, y, _ = audit_data
    torch.manual_seed(0)
    net = NeuralNetClassifier(MLP, module__n_features=5, module__n_classes=2,
                              module__hidden_units=(8,), criterion=nn.CrossEntropyLoss,
                              max_epochs=30, lr=0.2, train_split=None, verbose=0)
    net.fit(X, y)
    dense = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
    layers = [(m, "weight") for m in net.module_.modules() if isinstance(m, nn.Linear)]
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=0.5)
    net.dense_state_dict_ = dense
    return net, dense


def test_group_diagnostics_columns_and_bound_terms(audit_data, skorch_pruned):
    X, y, A = audit_data
    net, dense = skorch_pruned
    diag = GroupDiagnostics(net, X, y, sensitive_features=A["race"], max_iter=50, tol=1e-6,
                            batch_size=64, random_state=0)
    table = diag.by_group
    assert list(table.columns) == [
        *FRAME_COLUMNS,  # the audit table's own columns, in its order
        "gradient_norm", "hessian_max_eig", "boundary_closeness", "input_grad_norm",
        "param_distance", "bound_gradient_term", "bound_hessian_term", "bound",
        "taylor_estimate",
    ]
    assert list(table.index) == ["b", "o", "w"] and table.index.name == "race"
    assert table["count"].sum() == len(y)

    # ‖θ̂ − θ*‖ over all trainable parameters, θ̂ the masked weights weight_orig * weight_mask
    pruned = {}
    for name, m in net.module_.named_modules():
        if isinstance(m, nn.Linear):
            pruned[f"{name}.weight"] = m.weight_orig * m.weight_mask
            pruned[f"{name}.bias"] = m.bias
    diff = torch.cat([(dense[k] - pruned[k]).reshape(-1) for k in dense])  # θ* − θ̂
    distance = float(diff.detach().double().norm())
    np.testing.assert_allclose(table["param_distance"], distance, rtol=1e-6)
    np.testing.assert_allclose(table["bound_gradient_term"], table["gradient_norm"] * distance)
    np.testing.assert_allclose(table["bound_hessian_term"],
                               0.5 * table["hessian_max_eig"] * distance**2)
    np.testing.assert_allclose(table["bound"],
                               table["bound_gradient_term"] + table["bound_hessian_term"])
    np.testing.assert_allclose(table["excess_risk"], table["loss_pruned"] - table["loss_dense"])

    # the second-order estimate g_aᵀΔ + ½ ΔᵀH_aΔ, from dense float64 Hessians; by
    # Cauchy–Schwarz and λ_max it never exceeds the bound
    codes = pd.Categorical(A["race"], categories=table.index).codes
    dense64 = MLP(5, 2, hidden_units=(8,)).double()
    dense64.load_state_dict({k: v.double() for k, v in dense.items()})
    for g in range(3):
        mask = codes == g
        loss, flat = mean_loss_of_flat(dense64, X[mask].astype(np.float64), y[mask])
        H = torch.autograd.functional.hessian(loss, flat)
        gradient = torch.func.grad(loss)(flat)
        delta = -diff.detach().double()  # parameter order of MLP.named_parameters() = dense's keys
        expected = float(gradient @ delta + 0.5 * delta @ H @ delta)
        assert table["taylor_estimate"].iloc[g] == pytest.approx(expected, rel=1e-3, abs=1e-6)
        assert np.linalg.eigvalsh(H.numpy()).max() == pytest.approx(
            table["hessian_max_eig"].iloc[g], rel=1e-3)
    assert (table["taylor_estimate"] <= table["bound"] + 1e-6).all()

    # the factors are taken at the dense parameters θ*
    y_index = np.searchsorted(net.classes_, y)
    np.testing.assert_allclose(
        table["gradient_norm"],
        group_gradient_norms(net.module_, X, y_index, codes, params=dense), rtol=1e-5,
    )
    mask = codes == 1
    assert table["hessian_max_eig"].iloc[1] == pytest.approx(
        top_hessian_eigenvalue(net.module_, X[mask], y_index[mask], params=dense, tol=1e-6,
                               max_iter=50), rel=1e-3)
    proba_dense = NeuralNetClassifier.predict_proba(_dense_copy(net, dense), X)
    np.testing.assert_allclose(
        table["boundary_closeness"],
        pd.Series(boundary_closeness(proba_dense)).groupby(codes).mean(), rtol=1e-5,
    )
    np.testing.assert_allclose(
        table["accuracy_pruned"],
        pd.Series(net.predict(X) == y).groupby(codes).mean(),
    )
    assert diag.hessian_convergence["converged"].all()


def _dense_copy(net, dense):
    """The skorch net with its dense weights, for reference predictions."""
    plain = copy.copy(net)
    module = MLP(5, 2, hidden_units=(8,))
    module.load_state_dict(dense)
    plain.module_ = module.eval()
    return plain


def test_group_diagnostics_correlations_and_plot(audit_data, skorch_pruned):
    X, y, A = audit_data
    net, _ = skorch_pruned
    diag = GroupDiagnostics(net, X, y, sensitive_features=A, max_iter=10, tol=1e-3,
                            random_state=0)
    assert isinstance(diag.by_group.index, pd.MultiIndex)  # intersectional race × sex
    assert diag.by_group.index.names == ["race", "sex"] and len(diag.by_group) == 6
    corr = diag.correlations()
    assert list(corr.index) == ["gradient_norm", "hessian_max_eig", "boundary_closeness",
                                "input_grad_norm", "bound", "taylor_estimate", "count"]
    assert corr.dropna().between(-1, 1).all()
    expected = diag.by_group[["excess_risk", "gradient_norm"]].corr(method="kendall").iloc[0, 1]
    assert diag.correlations("kendall")["gradient_norm"] == pytest.approx(expected)
    fig = diag.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 4
    assert fig.axes[1].get_xticklabels()[0].get_text() == "b, f"
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match=(
            "The 'method' parameter of GroupDiagnostics.correlations must be a str among")):
        diag.correlations("cosine")


def test_group_diagnostics_on_prunable_net_matches_excess_risk_frame(audit_data):
    X, y, A = audit_data
    y = np.where(y == 1, "yes", "no")  # any labels: mapped through net.classes_
    net = PrunableNetClassifier(MLP, module__hidden_units=(8,), max_epochs=15, lr=0.2,
                                random_state=0, verbose=0).fit(X, y).prune(0.6)
    diag = GroupDiagnostics(net, X, y, sensitive_features=A["race"], max_iter=20,
                            random_state=0)
    frame = ExcessRiskFrame(net, X, y, sensitive_features=A["race"])
    np.testing.assert_allclose(diag.by_group["excess_risk"], frame.by_group["excess_risk"],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(diag.by_group["accuracy_dense"],
                               frame.by_group["accuracy_dense"])
    assert diag.has_reference


def test_group_diagnostics_seeds_as_the_one_helper_and_the_frame_do(audit_data):
    """An int random_state: group k's solver starts from torch_seed(random_state, offset=k), and
    the bootstrap is the frame's own for the same seed."""
    X, y, A = audit_data
    net = PrunableNetClassifier(MLP, module__hidden_units=(8,), max_epochs=5, lr=0.2,
                                random_state=0, verbose=0).fit(X, y).prune(0.6)
    diag = GroupDiagnostics(net, X, y, sensitive_features=A["race"], max_iter=3, tol=0,
                            random_state=7, n_boot=50)
    frame = ExcessRiskFrame(net, X, y, sensitive_features=A["race"], n_boot=50, random_state=7)
    for ours, theirs in zip(diag.frame.by_group_ci, frame.by_group_ci, strict=True):
        np.testing.assert_allclose(ours["excess_risk"], theirs["excess_risk"], rtol=1e-4,
                                   atol=1e-6)
    codes = group_codes(A["race"])
    module = net.module_
    for k, group in enumerate(codes.index):
        rows = codes.codes == k
        expected = top_hessian_eigenvalue(  # tol=0: exactly max_iter products, no warning
            module, X[rows], net.classes_.searchsorted(y[rows]), max_iter=3, tol=0,
            random_state=7 + k, params=net.dense_state_dict_,
        )
        assert diag.by_group.loc[group, "hessian_max_eig"] == pytest.approx(expected, rel=1e-5)


def test_group_diagnostics_without_reference(audit_data):
    X, y, A = audit_data
    torch.manual_seed(0)
    net = NeuralNetClassifier(MLP, module__n_features=5, module__n_classes=2,
                              module__hidden_units=(4,), criterion=nn.CrossEntropyLoss,
                              max_epochs=3, train_split=None, verbose=0).fit(X, y)
    diag = GroupDiagnostics(net, X, y, sensitive_features=list(A["sex"]), max_iter=5, tol=0)
    assert list(diag.by_group.columns) == [
        "count", "loss_dense", "accuracy_dense", "gradient_norm", "hessian_max_eig",
        "boundary_closeness", "input_grad_norm",
    ]  # the net is its own θ*: no pruned columns, no excess risk
    assert diag.frame is None
    assert diag.by_group.index.name == "sensitive_feature_0"
    assert not diag.has_reference
    with pytest.raises(ValueError, match="no excess risk"):
        diag.correlations()
    fig = diag.plot()
    matplotlib.pyplot.close(fig)
    # an explicit reference turns the bound on; here the net is its own reference: R(a) = 0
    diag = GroupDiagnostics(net, X, y, sensitive_features=A["sex"], reference=net, max_iter=5,
                            tol=0)
    np.testing.assert_allclose(diag.by_group["excess_risk"], 0.0, atol=1e-7)
    np.testing.assert_allclose(diag.by_group["param_distance"], 0.0)


def test_group_diagnostics_errors(audit_data, skorch_pruned):
    X, y, A = audit_data
    net, dense = skorch_pruned
    with pytest.raises(ValueError, match="sensitive_features has 299 rows but X and y have 300"):
        GroupDiagnostics(net, X, y, sensitive_features=A["race"][:-1])
    with pytest.raises(ValueError, match="labels not seen in fit"):
        GroupDiagnostics(net, X, np.where(y == 1, 2, y), sensitive_features=A["race"])
    with pytest.raises(ValueError, match="y has 299 samples but X has 300"):
        GroupDiagnostics(net, X, y[:-1], sensitive_features=A["race"])
    with pytest.raises(ValueError, match="has shape"):
        GroupDiagnostics(net, X, y, sensitive_features=A["race"],
                         reference=MLP(5, 2, hidden_units=(4,)))
    other = copy.copy(net)
    other.classes_inferred_ = np.array([0, 2])
    with pytest.raises(ValueError, match="reference.classes_"):
        GroupDiagnostics(net, X, y, sensitive_features=A["race"], reference=other)
    with pytest.raises(ValueError, match=(
            r"The 'tol' parameter of GroupDiagnostics must be a float in the range "
            r"\[0.0, inf\). Got -1 instead.")):
        GroupDiagnostics(net, X, y, sensitive_features=A["race"], tol=-1)
    with pytest.raises(ValueError, match="'eig_method' parameter of GroupDiagnostics"):
        GroupDiagnostics(net, X, y, sensitive_features=A["race"], eig_method="arnoldi")
    with pytest.raises(NotFittedError, match="call fit first"):
        GroupDiagnostics(NeuralNetClassifier(MLP), X, y, sensitive_features=A["race"])
    with pytest.raises(ValueError, match="does not match net.predict_proba"):
        probs = NeuralNetClassifier(nn.Sequential(nn.Linear(5, 2), nn.Softmax(dim=1)),
                                    max_epochs=1, train_split=None, verbose=0).fit(X, y)
        GroupDiagnostics(probs, X, y, sensitive_features=A["race"])
    hooked = copy.copy(net)
    hooked.dense_state_dict_ = None
    with pytest.warns(UserWarning, match="no dense reference"):
        GroupDiagnostics(hooked, X, y, sensitive_features=A["race"], max_iter=2, tol=0)


# --------------------------------------------------------------------------------------------
# GroupDiagnostics: one audit table, the caller's module left alone
# --------------------------------------------------------------------------------------------
def test_group_diagnostics_audit_columns_come_from_excess_risk_frame(audit_data, skorch_pruned):
    X, y, A = audit_data
    net, dense = skorch_pruned
    diag = GroupDiagnostics(net, X, y, sensitive_features=A["race"], max_iter=5, tol=0,
                            random_state=0)
    # the two nets' probabilities, computed here by hand
    with torch.no_grad():
        pruned_logits = net.module_.eval()(torch.as_tensor(X)).double()
        dense_module = MLP(5, 2, hidden_units=(8,))
        dense_module.load_state_dict(dense)
        dense_logits = dense_module.eval()(torch.as_tensor(X)).double()
    frame = ExcessRiskFrame.from_outputs(
        y, torch.softmax(dense_logits, 1).numpy(), torch.softmax(pruned_logits, 1).numpy(),
        sensitive_features=A["race"], classes=net.classes_,
    )
    pd.testing.assert_frame_equal(diag.by_group[list(FRAME_COLUMNS)], frame.by_group,
                                  rtol=1e-6)
    assert isinstance(diag.frame, ExcessRiskFrame)
    assert diag.frame.fairness_violation == pytest.approx(
        diag.by_group["excess_risk"].max() - diag.by_group["excess_risk"].min()
    )
    assert diag.frame.max_excess_accuracy_gap == diag.by_group["excess_accuracy_gap"].max()


def test_group_diagnostics_bootstrap_intervals(audit_data, skorch_pruned):
    X, y, A = audit_data
    net, _ = skorch_pruned
    kwargs = dict(sensitive_features=A["race"], max_iter=3, tol=0, n_boot=50, random_state=0)
    table = GroupDiagnostics(net, X, y, **kwargs).by_group
    again = GroupDiagnostics(net, X, y, **kwargs).by_group
    pd.testing.assert_frame_equal(table, again)  # deterministic under random_state
    for column in ("excess_risk", "excess_accuracy_gap", "accuracy_drop"):
        low, high = table[f"{column}_ci_low"], table[f"{column}_ci_high"]
        assert (low <= table[column] + 1e-12).all() and (table[column] <= high + 1e-12).all()
    assert "gradient_norm" in table.columns
    with pytest.raises(ValueError, match="The 'n_boot' parameter of GroupDiagnostics must be"):
        GroupDiagnostics(net, X, y, sensitive_features=A["race"], n_boot=0)


def _prunable_net(X, y, **params):
    return PrunableNetClassifier(MLP, module__hidden_units=(8,), module__dropout=0.3,
                                 max_epochs=2, lr=0.2, random_state=0, verbose=0,
                                 **params).fit(X, y)


@pytest.mark.parametrize("kind", ["pruned_net", "dense_net", "module"])
def test_group_diagnostics_leaves_mode_and_grads_alone(audit_data, kind):
    X, y, A = audit_data
    net = _prunable_net(X, y)
    if kind == "pruned_net":
        net.prune(0.5)
    module = net.module_
    # the caller is mid-training: train mode, one submodule frozen, gradients present
    nn.functional.cross_entropy(module(torch.as_tensor(X)), torch.as_tensor(y)).backward()
    module.train()
    next(m for m in module.modules() if isinstance(m, nn.Dropout)).eval()
    last = [p for p in module.parameters()][-1]
    last.grad = None
    kept = _mode_and_grads(module)
    assert kept[0].count(False) == 1 and kept[1][-1] is None and kept[1][0] is not None
    state = copy.deepcopy(module.state_dict())

    target = module if kind == "module" else net
    GroupDiagnostics(target, X, y, sensitive_features=A["race"], max_iter=3, tol=0)

    _assert_mode_and_grads_kept(module, kept)
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


def test_group_diagnostics_restores_mode_after_an_error(audit_data):
    X, y, A = audit_data
    net = _prunable_net(X, y).prune(0.5)
    net.module_.train()
    kept = _mode_and_grads(net.module_)
    with pytest.raises(ValueError, match="labels not seen in fit"):
        GroupDiagnostics(net, X, np.where(y == 1, 7, y), sensitive_features=A["race"])
    with pytest.raises(ValueError, match="softmax of the module's output"):
        # fails after net.predict_proba ran (skorch switches the module to eval mode)
        net.predict_proba = lambda X: 1.0 - PrunableNetClassifier.predict_proba(net, X)
        GroupDiagnostics(net, X, y, sensitive_features=A["race"])
    _assert_mode_and_grads_kept(net.module_, kept)


# --------------------------------------------------------------------------------------------
# the Hessian operator of the eigen-solvers, past its memory budget
# --------------------------------------------------------------------------------------------
# The eigen-solvers keep the first-order graph of as many batches as fit in 256 MiB and
# recompute the rest at every product. No public call on test-sized data reaches that budget,
# so the operator is imported from its private module to check the products that large data
# would get: H v must equal the dense Hessian whether none, some or all batches are kept.
@pytest.mark.parametrize("budget", ["none", "one batch", "two batches", "all"])
def test_hessian_operator_equals_dense_hessian_at_any_memory_budget(tiny_data, budget):
    from fairprune_sk.diagnostics._evaluator import _Evaluator
    from fairprune_sk.diagnostics._hessian import _HessianOperator

    X, y, _ = tiny_data
    module = tiny_net()
    H = dense_hessian(module, X, y)
    gen = torch.Generator().manual_seed(2)
    vectors = [torch.randn(H.shape[0], dtype=torch.float64, generator=gen) for _ in range(3)]
    idx = np.arange(len(X))
    with _Evaluator(module) as ev:
        probe = _HessianOperator(ev, X, y, idx, batch_size=7, cache_bytes=2**40)
        probe.gradient()
        per_batch = probe.batch_bytes
        bytes_for = {"none": 0, "one batch": per_batch, "two batches": 2 * per_batch + 1,
                     "all": 2**40}
        op = _HessianOperator(ev, X, y, idx, batch_size=7, cache_bytes=bytes_for[budget])
        for v in vectors:  # repeated products reuse the kept graph
            torch.testing.assert_close(op(v), H @ v, rtol=1e-10, atol=1e-12)
        expected_kept = {"none": 0, "one batch": 1, "two batches": 2, "all": 6}[budget]
        assert op.n_kept_batches == expected_kept
        loss, flat = mean_loss_of_flat(module, X, y)
        flat.requires_grad_(True)
        reference = torch.autograd.grad(loss(flat), flat)[0]
        torch.testing.assert_close(op.gradient(), reference, rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in module.parameters())
