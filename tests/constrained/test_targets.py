"""The recommended ``gap_and_loss`` target and the paper's eq. (6) ``gradient_norm`` target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import make_fair
from torch.func import functional_call, grad

from fairprune_sk.constrained._dual import DualState
from fairprune_sk.constrained._lagrangian import ceag_lagrangian, gradient_norm_lagrangian


@pytest.fixture
def batch():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    X = torch.randn(40, 5)
    y = torch.randint(0, 3, (40,))
    codes = torch.tensor([0] * 20 + [1] * 15 + [2] * 5)  # group 3 absent
    return module, X, y, codes


def test_gap_and_loss_lagrangian_gradient_equals_autograd_of_the_formula(batch):
    module, X, y, codes = batch
    lam = torch.tensor([0.3, 0.0, 0.5, 0.9])
    nu = torch.tensor([0.0, 0.2, 0.4, 0.7])
    losses = torch.nn.functional.cross_entropy(module(X), y, reduction="none")
    loss = losses.mean()
    ours = ceag_lagrangian(loss, losses, codes, lam, damped=True, loss_multipliers=nu)
    ours_grad = torch.autograd.grad(ours, list(module.parameters()))
    # independently: a loop over the present groups
    losses = torch.nn.functional.cross_entropy(module(X), y, reduction="none")
    J = losses.mean()
    total = J
    for g in (0, 1, 2):
        J_g = losses[codes == g].mean()
        total = total + lam[g] * J_g + nu[g] * (J_g - J.detach())  # sg[J]: a constant
    expected = total / (1 + lam.sum() + nu.sum())
    expected_grad = torch.autograd.grad(expected, list(module.parameters()))
    torch.testing.assert_close(ours, expected)
    for got, want in zip(ours_grad, expected_grad, strict=True):
        torch.testing.assert_close(got, want)


def test_equal_loss_dual_step_equals_its_recomputation_from_the_accumulated_losses():
    state = DualState(np.array(["a", "b", "c"]))
    rng = np.random.default_rng(0)
    sums, weights = np.zeros(3), np.zeros(3)
    for _ in range(4):
        s, w = rng.uniform(0, 5, 3), rng.integers(1, 9, 3).astype(float)
        state.accumulate(s, w)
        sums, weights = sums + s, weights + w
    gap = sums / weights - sums.sum() / weights.sum()
    np.testing.assert_allclose(state.signed_loss_gap(), gap)
    state.step_loss(state.signed_loss_gap(), lr=0.5, cap=1.0)
    np.testing.assert_allclose(state.loss_multipliers, np.clip(0.5 * gap, 0.0, 1.0))


def test_gap_and_loss_learns_loss_multipliers(tabular):
    X, y, group = tabular
    common = dict(pruning_rate=0.8, fine_tune_epochs=3, max_epochs=4)
    ceag = make_fair(constraint_target="accuracy_gap", dual_lr="auto", **common)
    both = make_fair(constraint_target="gap_and_loss", dual_lr="auto", loss_dual_lr=0.5,
                     **common)
    ceag.fit(X, y, sensitive_features=group)
    both.fit(X, y, sensitive_features=group)
    assert both.loss_dual_lr_ == 0.5 and both.noise_margin_ == 0.0
    assert both.dual_state_.loss_multipliers.max() > 0
    assert not ceag.dual_state_.loss_multipliers.any()  # accuracy_gap: no equal-loss term


def test_gradient_norm_lagrangian_equals_torch_func(batch):
    module, X, y, codes = batch
    lam = torch.tensor([0.3, 0.0, 0.5, 0.9])
    params = list(module.parameters())
    losses = torch.nn.functional.cross_entropy(module(X), y, reduction="none")
    ours, gaps = gradient_norm_lagrangian(losses.mean(), losses, codes, lam, params)
    ours_grad = torch.autograd.grad(ours, params)
    # independently: per-group gradients through torch.func on a functional copy of the module
    names = [name for name, _ in module.named_parameters()]

    def group_loss(flat, mask):
        out = functional_call(module, dict(zip(names, flat, strict=True)), (X[mask],))
        return torch.nn.functional.cross_entropy(out, y[mask])

    def lagrangian(flat):
        def norm(mask):
            g = grad(group_loss)(flat, mask)
            return torch.sqrt(sum((t**2).sum() for t in g))

        everyone = torch.ones(len(y), dtype=torch.bool)
        overall = norm(everyone)
        value = group_loss(flat, everyone)
        expected_gaps = []
        for g in (0, 1, 2):
            gap = norm(codes == g) - overall
            expected_gaps.append(gap.detach())
            value = value + lam[g] * gap.abs()
        return value, torch.stack(expected_gaps)

    flat = tuple(p.detach().clone().requires_grad_(True) for p in params)
    expected, expected_gaps = lagrangian(flat)
    expected_grad = torch.autograd.grad(expected, flat)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(gaps[:3], expected_gaps)
    assert torch.isnan(gaps[3])  # absent group: no estimate
    for got, want in zip(ours_grad, expected_grad, strict=True):
        torch.testing.assert_close(got, want)


def test_gradient_norm_target_trains_and_records_violations(tabular):
    X, y, group = tabular
    fair = make_fair(constraint_target="gradient_norm", constraint_phase="before", max_epochs=3)
    fair.fit(X, y, sensitive_features=group)
    assert fair.multipliers_.gt(0).any()
    violations = fair.history[-1, "constraint_violation"]
    assert len(violations) == 3 and all(v >= 0 for v in violations)


def test_gradient_norm_refuses_a_heldout_split(tabular):
    X, y, group = tabular
    fair = make_fair(constraint_target="gradient_norm", constraint_split=0.2)
    with pytest.raises(ValueError, match="constraint_split must be None"):
        fair.fit(X, y, sensitive_features=group)
