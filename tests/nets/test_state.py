"""Estimator state without wholesale copies: transactions, dense reference, copies, classes=."""

from __future__ import annotations

import copy
import importlib.util
import threading

import numpy as np
import pytest
import torch
from factories import make_net
from skorch.callbacks import Callback

from fairprune_sk import ExcessRiskFrame, FairConstrainedNet
from fairprune_sk._validation import (
    check_choice,
    check_int,
    check_real,
    torch_generator,
    torch_seed,
)
from fairprune_sk.models import MLP
from fairprune_sk.pruning import is_pruned


class LockingLogger(Callback):
    """Holds a lock as skorch's TensorBoard / MLflow / W&B loggers hold writers (uncopyable)."""

    def __init__(self, fail_at=None):
        self.lock = threading.Lock()
        self.epochs = 0
        self.fail_at = fail_at

    def on_epoch_end(self, net, **kwargs):
        with self.lock:
            self.epochs += 1
        if self.fail_at is not None and self.epochs >= self.fail_at:
            raise RuntimeError("logger failed")


def _state(net):
    return {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


def _assert_state(before, net):
    after = net.module_.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def _logged_net(**params):
    logger = LockingLogger()
    return make_net(callbacks=[("logger", logger)], **params), logger


# ---------------------------------------------------------------------------------------------
# item 1: callbacks holding locks, never copied
# ---------------------------------------------------------------------------------------------
def test_lock_holding_callback_works_with_partial_fit_frame_and_copies(tabular):
    X, y, group = tabular
    net, logger = _logged_net()
    net.fit(X, y).prune(0.6)
    net.partial_fit(X, y)
    assert logger.epochs == 10
    n_rows = len(net.history)
    frame = ExcessRiskFrame(net, X, y, sensitive_features=group)  # dense_reference()
    assert frame.by_group.shape[0] == 3
    reference = net.dense_reference()
    assert dict(reference.callbacks_)["logger"] is logger
    assert not is_pruned(reference.module_) and is_pruned(net.module_)
    assert len(net.history) == n_rows
    copied = net.pruned_copy(0.8, X=X, y=y, fine_tune_epochs=2)
    assert dict(copied.callbacks_)["logger"] is logger and logger.epochs == 12
    assert len(net.history) == n_rows and len(copied.history) == n_rows + 2
    assert net.sparsity_ == pytest.approx(0.6, abs=0.01)


def test_lock_holding_callback_works_with_compact(tabular):
    X, y, _ = tabular
    net, logger = _logged_net()
    net.fit(X, y).prune(0.5, method="structured_l1")
    compacted = net.compact()
    assert dict(compacted.callbacks_)["logger"] is logger
    np.testing.assert_allclose(compacted.predict_proba(X), net.predict_proba(X), atol=1e-5)
    assert compacted.module_ is not net.module_


def test_failed_fit_keeps_the_users_callback_objects(tabular):
    X, y, _ = tabular
    logger = LockingLogger()
    net = make_net(callbacks=[("logger", logger)], warm_start=True).fit(X, y)
    before, proba = _state(net), net.predict_proba(X)
    logger.fail_at = logger.epochs + 2
    with pytest.raises(RuntimeError, match="logger failed"):
        net.fit(X, y)  # warm start: trains the same module object in place
    assert net.callbacks[0][1] is logger
    assert dict(net.callbacks_)["logger"] is logger
    _assert_state(before, net)
    np.testing.assert_array_equal(net.predict_proba(X), proba)


def test_failed_partial_fit_restores_module_optimizer_and_history(tabular):
    X, y, _ = tabular
    logger = LockingLogger()
    net = make_net(callbacks=[("logger", logger)], optimizer__momentum=0.9).fit(X, y)
    net.prune(0.5).partial_fit(X, y)
    control = copy.deepcopy(net.module_.state_dict()), len(net.history)
    optimizer = {k: copy.deepcopy(v) for k, v in net.optimizer_.state_dict()["state"].items()}
    logger.fail_at = logger.epochs + 3
    with pytest.raises(RuntimeError, match="logger failed"):
        net.partial_fit(X, y)
    _assert_state(control[0], net)
    assert len(net.history) == control[1]
    state = net.optimizer_.state_dict()["state"]
    for key, value in optimizer.items():
        assert torch.equal(state[key]["momentum_buffer"], value["momentum_buffer"])
    assert dict(net.callbacks_)["logger"] is logger
    assert net.sparsity_ == pytest.approx(0.5, abs=0.01)


def test_fair_net_with_lock_holding_callback(tabular):
    X, y, group = tabular
    logger = LockingLogger()
    fair = FairConstrainedNet(
        MLP, module__hidden_units=(16,), max_epochs=2, lr=0.1, pruning_rate=0.5,
        fine_tune_epochs=1, constraint_target="excess_risk", random_state=0,
        callbacks=[("logger", logger)],
    ).fit(X, y, sensitive_features=group)
    fair.partial_fit(X, y, sensitive_features=group)
    fair.fine_tune(X, y, 1, sensitive_features=group)
    ExcessRiskFrame(fair, X, y, sensitive_features=group)
    copied = fair.pruned_copy(0.7, X=X, y=y, fine_tune_epochs=1, sensitive_features=group)
    assert copied.sparsity_ == pytest.approx(0.7, abs=0.01)
    assert logger.epochs == 2 + 1 + 2 + 1 + 1


# ---------------------------------------------------------------------------------------------
# item 4: pruned_copy / fine_tune
# ---------------------------------------------------------------------------------------------
def test_pruned_copy_is_the_old_deep_copy_result_and_leaves_net_untouched(fitted_net, tabular):
    X, y, _ = tabular
    before, n_rows = _state(fitted_net), len(fitted_net.history)
    old = copy.deepcopy(fitted_net).prune(0.7)
    old.set_params(max_epochs=2)
    old.partial_fit(X, y)
    new = fitted_net.pruned_copy(0.7, X=X, y=y, fine_tune_epochs=2)
    np.testing.assert_array_equal(new.predict_proba(X), old.predict_proba(X))
    _assert_state(before, fitted_net)
    assert len(fitted_net.history) == n_rows and fitted_net.dense_state_dict_ is None
    np.testing.assert_array_equal(
        new.dense_reference().predict_proba(X), fitted_net.predict_proba(X)
    )
    assert new.history[-1, "phase"] == "fine_tune"


def test_fine_tune_and_pruned_copy_check_their_arguments(fitted_net, tabular):
    X, y, _ = tabular
    before = _state(fitted_net)
    assert fitted_net.fine_tune(X, y, 0) is fitted_net
    _assert_state(before, fitted_net)
    with pytest.raises(ValueError, match="epochs must be an int >= 0"):
        fitted_net.fine_tune(X, y, -1)
    with pytest.raises(ValueError, match="needs the training data"):
        fitted_net.pruned_copy(0.5, fine_tune_epochs=1)
    with pytest.raises(ValueError, match="'rate' parameter of .* must be a float in the range"):
        fitted_net.pruned_copy(1.5)
    _assert_state(before, fitted_net)
    n_rows = len(fitted_net.history)
    fitted_net.fine_tune(X, y, 2)
    assert len(fitted_net.history) == n_rows + 2


# ---------------------------------------------------------------------------------------------
# item 3: classes=
# ---------------------------------------------------------------------------------------------
def test_unsorted_classes_parameter_in_fit_and_partial_fit(tabular):
    X, y, _ = tabular
    labels = np.where(y == 1, "yes", "no")
    net = make_net(classes=["yes", "no"], max_epochs=15).fit(X, labels)
    assert list(net.classes_) == ["yes", "no"]
    proba = net.predict_proba(X)
    np.testing.assert_array_equal(net.predict(X), np.asarray(["yes", "no"])[proba.argmax(1)])
    assert net.score(X, labels) > 0.85
    net.partial_fit(X, labels)
    assert net.score(X, labels) > 0.85
    first = make_net(classes=["yes", "no"]).partial_fit(X, labels)
    assert list(first.classes_) == ["yes", "no"]
    unsorted = make_net().partial_fit(X, labels, classes=["yes", "no"])
    assert list(unsorted.classes_) == ["no", "yes"]  # sklearn's partial_fit: sorted


def test_partial_fit_reads_classes_before_the_one_class_check(tabular):
    X, y, _ = tabular
    net = make_net().partial_fit(X[y == 0], y[y == 0], classes=[0, 1])
    assert list(net.classes_) == [0, 1]
    assert net.predict_proba(X).shape == (len(X), 2)
    net.partial_fit(X[y == 1], y[y == 1], classes=[0, 1])
    with pytest.raises(ValueError, match="differs from the classes"):
        net.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="one class"):
        make_net().partial_fit(X[y == 0], y[y == 0])
    group = np.zeros(int((y == 0).sum()))
    fair = FairConstrainedNet(MLP, max_epochs=1, random_state=0).partial_fit(
        X[y == 0], y[y == 0], classes=[0, 1], sensitive_features=group
    )
    assert list(fair.classes_) == [0, 1]


# ---------------------------------------------------------------------------------------------
# item 5: the one seed helper and the shared checks
# ---------------------------------------------------------------------------------------------
def test_torch_seed_convention():
    assert torch_seed(None) is None
    assert torch_seed(7) == 7 and torch_seed(7, offset=2) == 9
    assert torch_seed(np.random.RandomState(0)) == torch_seed(np.random.RandomState(0))
    assert isinstance(torch_seed(np.random.default_rng(0)), int)
    for bad in (True, "seed", 1.5):
        with pytest.raises(ValueError, match="random_state must be None, an int"):
            torch_seed(bad)
    a, b = torch_generator(3), torch.Generator().manual_seed(3)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    np.random.seed(0)
    first = torch.rand(2, generator=torch_generator(None))
    np.random.seed(0)
    assert torch.equal(first, torch.rand(2, generator=torch_generator(None)))


def test_shared_checks_name_the_argument():
    assert check_int(2, "n", 1) == 2 and check_real(0.5, "tol", 0.0) == 0.5
    with pytest.raises(ValueError, match=r"n must be an int >= 1; got True"):
        check_int(True, "n", 1)
    with pytest.raises(ValueError, match=r"tol must be a real number >= 0.0; got nan"):
        check_real(float("nan"), "tol", 0.0)
    with pytest.raises(ValueError, match=r"method must be one of \['a', 'b'\]; got 'c'"):
        check_choice("c", "method", ("a", "b"))


# ---------------------------------------------------------------------------------------------
# item 2: skorch's save_params / load_params on a pruned net
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_safetensors", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(
        importlib.util.find_spec("safetensors") is None, reason="safetensors not installed")),
])
def test_save_and_load_params_round_trip_a_pruned_net(tabular, tmp_path, use_safetensors):
    X, y, group = tabular
    params = dict(optimizer__momentum=0.9, module__n_features=8, module__n_classes=2,
                  classes=[0, 1])
    net = make_net(**params).fit(X, y).prune(0.7, method="layer_magnitude")
    net.partial_fit(X, y)
    files = {"f_params": tmp_path / "w.pt", "f_history": tmp_path / "h.json",
             "f_dense_state_dict": tmp_path / "dense.pt"}
    if not use_safetensors:  # safetensors stores tensors only, not an optimizer's state
        files["f_optimizer"] = tmp_path / "opt.pt"
    net.save_params(use_safetensors=use_safetensors, **files)

    loaded = make_net(**params).initialize()
    loaded.load_params(use_safetensors=use_safetensors, **files)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    assert loaded.sparsity_ == net.sparsity_ == pytest.approx(0.7, abs=0.01)
    assert is_pruned(loaded.module_)
    for key, value in net.module_.state_dict().items():
        assert torch.equal(loaded.module_.state_dict()[key], value), key
    np.testing.assert_array_equal(
        loaded.dense_reference().predict_proba(X), net.dense_reference().predict_proba(X)
    )
    frame, expected = (ExcessRiskFrame(m, X, y, sensitive_features=group) for m in (loaded, net))
    assert frame.fairness_violation == expected.fairness_violation
    if not use_safetensors:  # same optimizer state and history: training continues identically
        net.partial_fit(X, y)
        loaded.partial_fit(X, y)
        np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
        assert loaded.sparsity_ == pytest.approx(0.7, abs=0.01)


def test_loading_a_dense_state_into_a_pruned_net_removes_the_masks(tabular, tmp_path):
    X, y, _ = tabular
    dense = make_net().fit(X, y)
    dense.save_params(f_params=tmp_path / "dense.pt")
    pruned = make_net().fit(X, y).prune(0.5)
    pruned.load_params(f_params=tmp_path / "dense.pt")
    assert not is_pruned(pruned.module_) and pruned.sparsity_ == 0.0
    np.testing.assert_array_equal(pruned.predict_proba(X), dense.predict_proba(X))
    with pytest.raises(ValueError, match="never pruned"):
        dense.save_params(f_dense_state_dict=tmp_path / "none.pt")
