"""Copies of a net share no mutable state, and dual steps count batches across epochs."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from factories import make_fair, make_net
from sklearn.base import clone
from sklearn.datasets import load_digits

CEAG = dict(constraint_target="accuracy_gap", pruning_rate=0.7, fine_tune_epochs=2)


def snapshot(net):
    """What training could change: weights, history length, multipliers, fitted attributes."""
    state = {
        "weights": {k: v.detach().clone() for k, v in net.module_.state_dict().items()},
        "history": len(net.history),
        "sparsity": net.sparsity_,
    }
    if hasattr(net, "dual_state_"):
        state["multipliers"] = net.dual_state_.multipliers.copy()
        state["replay"] = net.dual_state_.replay.values.copy()
    return state


def assert_unchanged(before, net):
    after = snapshot(net)
    assert after["history"] == before["history"]
    assert after["sparsity"] == before["sparsity"]
    for key, value in before["weights"].items():
        assert torch.equal(after["weights"][key], value), key
    for key in ("multipliers", "replay"):
        if key in before:
            np.testing.assert_array_equal(after[key], before[key])


def copies(net, X, y, group):
    """Each way of copying a fitted net, with the call that trains the copy."""
    return {
        "pruned_copy": net.pruned_copy(0.8),
        "dense_reference": net.dense_reference(),
        "deepcopy": copy.deepcopy(net),
        "pickle": pickle.loads(pickle.dumps(net)),
    }


@pytest.fixture
def fitted_fair(tabular):
    X, y, group = tabular
    fair = make_fair(**CEAG, dual_update=3).fit(X, y, sensitive_features=group)
    assert fair.dual_state_.multipliers.any()  # the constraint acted: there is state to share
    return fair


@pytest.mark.parametrize("kind", ["pruned_copy", "dense_reference", "deepcopy", "pickle"])
def test_fine_tuning_a_copy_leaves_the_original_alone(fitted_fair, tabular, kind):
    X, y, group = tabular
    before = snapshot(fitted_fair)
    twin = copy.deepcopy(fitted_fair)
    other = copies(fitted_fair, X, y, group)[kind]
    if kind == "dense_reference":  # θ* has no θ* of its own: fine-tuning it is unconstrained
        other.set_params(constraint_phase="none")
    other.fine_tune(X, y, 2, sensitive_features=group)
    assert len(other.history) == before["history"] + 2
    assert_unchanged(before, fitted_fair)
    # and the original's next fine-tuning is that of a twin that made no copy
    fitted_fair.fine_tune(X, y, 1, sensitive_features=group)
    twin.fine_tune(X, y, 1, sensitive_features=group)
    np.testing.assert_array_equal(fitted_fair.dual_state_.multipliers, twin.dual_state_.multipliers)
    for key, value in twin.module_.state_dict().items():
        assert torch.equal(fitted_fair.module_.state_dict()[key], value), key


@pytest.mark.parametrize("kind", ["pruned_copy", "dense_reference", "deepcopy", "pickle"])
def test_fine_tuning_the_original_leaves_a_copy_alone(fitted_fair, tabular, kind):
    X, y, group = tabular
    other = copies(fitted_fair, X, y, group)[kind]
    before = snapshot(other)
    fitted_fair.fine_tune(X, y, 2, sensitive_features=group)
    assert_unchanged(before, other)


def test_pruned_copy_with_fine_tuning_leaves_the_original_multipliers(fitted_fair, tabular):
    X, y, group = tabular
    before = fitted_fair.multipliers_.copy()
    fitted_fair.pruned_copy(0.8, X=X, y=y, fine_tune_epochs=1, sensitive_features=group)
    np.testing.assert_array_equal(fitted_fair.multipliers_, before)


def test_clone_starts_from_nothing(fitted_fair, tabular):
    X, y, group = tabular
    fresh = clone(fitted_fair)
    assert not hasattr(fresh, "dual_state_")
    before = snapshot(fitted_fair)
    fresh.fit(X, y, sensitive_features=group)
    assert_unchanged(before, fitted_fair)
    assert fresh.dual_state_ is not fitted_fair.dual_state_


def test_plain_net_copies_share_no_callbacks_or_history(tabular):
    X, y, _ = tabular
    net = make_net(pruning_rate=0.5).fit(X, y)
    other = net.pruned_copy(0.7)
    assert all(a is not b for (_, a), (_, b) in zip(net.callbacks_, other.callbacks_,
                                                     strict=True))
    before = snapshot(net)
    other.fine_tune(X, y, 2)
    assert_unchanged(before, net)


def test_dual_steps_count_batches_across_epochs(tabular):
    X, y, group = tabular  # 600 rows, batch 64: 10 batches per epoch
    fair = make_fair(**{**CEAG, "fine_tune_epochs": 3}, dual_update=7, average_tail=0.0)
    fair.fit(X, y, sensitive_features=group)
    # 30 fine-tuning batches, a dual step every 7 counted across epochs: after 7, 14, 21, 28
    # (counted per epoch, the last step would come after batch 7 of the third epoch: 3 left)
    assert fair.dual_state_.batches_since_update == 30 - 28


def test_too_few_batches_for_one_dual_step_steps_every_epoch_and_warns():
    # digits (1,797 rows), 1,000 training rows, batch 64: 16 batches per epoch, under the 20
    # batches of CEAG's automatic dual_update
    X, y = load_digits(return_X_y=True)
    X, y = X[:1000] / 16.0, y[:1000]
    group = np.where(y < 5, "low", "high")
    params = dict(pruning_rate=0.9, fine_tune_epochs=1, max_epochs=10)
    fair = make_fair(constraint_target="accuracy_gap", dual_lr="auto", dual_update="auto",
                     **params)
    with pytest.warns(UserWarning, match=r"dual_update=20 is more than the 16 training batches"):
        fair.fit(X, y, sensitive_features=group)
    assert fair.multipliers_.gt(0).any()  # a dual step was taken, at the end of the epoch
    plain = make_net(**params).fit(X, y)
    with pytest.warns(UserWarning, match="dual step is taken at the end of every epoch"):
        fair.fine_tune(X, y, 1, sensitive_features=group)  # now under the constraint
    plain.fine_tune(X, y, 1)
    assert not np.allclose(fair.predict_proba(X), plain.predict_proba(X))
