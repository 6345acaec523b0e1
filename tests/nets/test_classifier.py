"""PrunableNetClassifier: fit / prune / partial_fit lifecycle, sample weights, sklearn plumbing."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from factories import make_net
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
from fairprune_sk.models import MLP
from fairprune_sk.pruning import sparsity


def _weights(net):
    return {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


def _assert_same_state(before, net):
    after = net.module_.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def test_fit_learns_and_infers_shapes(tabular):
    X, y, _ = tabular
    net = make_net(max_epochs=15).fit(X, y)
    assert net.n_features_in_ == 8
    assert net.module_.layers[0].in_features == 8
    assert net.module_.layers[-1].out_features == 2
    assert net.score(X, y) > 0.85
    assert net.sparsity_ == 0.0
    assert net.dense_state_dict_ is None


def test_fit_is_reproducible_and_restores_global_rng(tabular):
    X, y, _ = tabular
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = make_net().fit(X, y)
    assert torch.equal(torch.rand(1), expected_next)  # caller's RNG untouched
    b = make_net().fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_prune_reaches_rate_and_keeps_dense_reference(fitted_net, tabular):
    X, y, group = tabular
    dense_proba = fitted_net.predict_proba(X)
    returned = fitted_net.prune(0.7)
    assert returned is fitted_net
    n_prunable = sum(
        m.weight.numel() for m in fitted_net.module_.layers if isinstance(m, torch.nn.Linear)
    )
    assert abs(fitted_net.sparsity_ * n_prunable - round(0.7 * n_prunable)) <= 1
    assert fitted_net.sparsity_ == pytest.approx(sparsity(fitted_net.module_))
    reference = fitted_net.dense_reference()
    np.testing.assert_allclose(reference.predict_proba(X), dense_proba, rtol=1e-6)
    frame = ExcessRiskFrame(fitted_net, X, y, sensitive_features=group)
    assert frame.overall["loss_dense"] == pytest.approx(
        -np.mean(np.log(dense_proba[np.arange(len(y)), y])), rel=1e-6
    )


def test_prune_is_cumulative_and_reference_is_first_dense(fitted_net, tabular):
    X, _, _ = tabular
    fitted_net.prune(0.5)
    reference = {k: v.clone() for k, v in fitted_net.dense_state_dict_.items()}
    fitted_net.prune(0.8)
    assert fitted_net.sparsity_ == pytest.approx(0.8, abs=0.01)
    for key, value in reference.items():
        assert torch.equal(fitted_net.dense_state_dict_[key], value)


def test_partial_fit_keeps_pruned_weights_at_zero(fitted_net, tabular):
    X, y, _ = tabular
    fitted_net.prune(0.6)
    zero_before = [
        m.weight == 0 for m in fitted_net.module_.layers if isinstance(m, torch.nn.Linear)
    ]
    fitted_net.partial_fit(X, y)
    zero_after = [
        m.weight == 0 for m in fitted_net.module_.layers if isinstance(m, torch.nn.Linear)
    ]
    for before, after in zip(zero_before, zero_after, strict=True):
        assert torch.all(after[before])  # every pruned weight still exactly zero
    assert fitted_net.sparsity_ == pytest.approx(0.6, abs=0.01)
    assert fitted_net.history[-1]["phase"] == "fine_tune"


def test_fit_with_pruning_rate_prunes_and_fine_tunes(tabular):
    X, y, _ = tabular
    net = make_net(pruning_rate=0.5, fine_tune_epochs=2).fit(X, y)
    assert net.sparsity_ == pytest.approx(0.5, abs=0.01)
    phases = [row["phase"] for row in net.history]
    assert phases == ["train"] * 5 + ["fine_tune"] * 2
    assert net.history[-1]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_iterative_schedule_reaches_rate_in_steps(tabular):
    X, y, _ = tabular
    net = make_net(
        pruning_rate=0.875, pruning_schedule="iterative", pruning_steps=3, fine_tune_epochs=1
    ).fit(X, y)
    sparsities = [row["sparsity"] for row in net.history if row["phase"] == "fine_tune"]
    np.testing.assert_allclose(sparsities, [0.5, 0.75, 0.875], atol=0.01)


@pytest.mark.parametrize("method", ["layer_magnitude", "random", "structured_l1", "structured_l2"])
def test_every_method_prunes(fitted_net, method):
    fitted_net.prune(0.5, method=method)
    assert fitted_net.sparsity_ > 0.2


def test_uniform_sample_weight_is_exactly_unweighted(tabular):
    X, y, _ = tabular
    plain = make_net().fit(X, y)
    ones = make_net().fit(X, y, sample_weight=np.ones(len(y)))
    twos = make_net().fit(X, y, sample_weight=np.full(len(y), 2.0))
    for other in (ones, twos):
        for key, value in plain.module_.state_dict().items():
            assert torch.equal(value, other.module_.state_dict()[key])


def test_sample_weight_changes_training_and_travels_through_split(tabular):
    X, y, _ = tabular
    weight = np.where(y == 1, 5.0, 1.0)
    net = make_net(train_split=ValidSplit(0.2, stratified=True)).fit(X, y, sample_weight=weight)
    plain = make_net(train_split=ValidSplit(0.2, stratified=True)).fit(X, y)
    assert "valid_loss" in net.history[-1] and "valid_acc" in net.history[-1]
    # up-weighting class 1 must raise the predicted share of class 1
    assert (net.predict(X) == 1).mean() > (plain.predict(X) == 1).mean()


def test_zero_weight_samples_are_ignored(tabular):
    X, y, _ = tabular
    weight = np.ones(len(y))
    weight[:100] = 0.0
    rng = np.random.default_rng(0)
    X_noise = X.copy()
    X_noise[:100] = rng.normal(size=(100, X.shape[1])) * 100  # garbage rows with weight 0
    a = make_net(batch_size=1000, max_epochs=3).fit(X_noise, y, sample_weight=weight)
    b = make_net(batch_size=1000, max_epochs=3).fit(X_noise[100:], y[100:])
    # one full batch per epoch: weighted mean over the 500 kept rows == plain mean over them
    # (the weights are normalised to mean 1 over 600 rows, so scale by 600/500 in lr terms)
    assert np.mean(a.predict(X[100:]) == b.predict(X[100:])) > 0.9


def test_string_labels_and_pandas_input(tabular):
    X, y, _ = tabular
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    labels = np.where(y == 1, "yes", "no")
    net = make_net(max_epochs=10).fit(frame, labels)
    assert list(net.classes_) == ["no", "yes"]
    pred = net.predict(frame)
    assert set(pred) <= {"no", "yes"}
    assert net.score(frame, labels) > 0.8
    assert list(net.feature_names_in_) == list(frame.columns)
    net.prune(0.5)
    by_group = ExcessRiskFrame(net, frame, labels, sensitive_features=y).by_group
    assert by_group["count"].sum() == len(labels)  # string labels map via classes_


def test_three_classes(tabular):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(300, centers=3, n_features=4, random_state=0)
    net = make_net(max_epochs=10).fit(X, y)
    assert net.predict_proba(X).shape == (300, 3)
    assert net.score(X, y) > 0.9


def test_clone_and_pickle_of_a_pruned_net(fitted_net, tabular):
    X, y, _ = tabular
    fitted_net.prune(0.7)
    fitted_net.partial_fit(X, y)
    restored = pickle.loads(pickle.dumps(fitted_net))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted_net.predict_proba(X))
    assert restored.sparsity_ == fitted_net.sparsity_
    np.testing.assert_array_equal(
        restored.dense_reference().predict_proba(X), fitted_net.dense_reference().predict_proba(X)
    )
    cloned = clone(fitted_net)
    assert cloned.get_params()["module__hidden_units"] == (16, 16)
    assert not hasattr(cloned, "dense_state_dict_")
    cloned.fit(X, y)
    np.testing.assert_array_equal(cloned.predict_proba(X), make_net().fit(X, y).predict_proba(X))


def test_pipeline_and_grid_search_over_pruning_rate(tabular):
    X, y, _ = tabular
    pipe = make_pipeline(StandardScaler(), make_net(max_epochs=3, fine_tune_epochs=1))
    search = GridSearchCV(pipe, {"prunablenetclassifier__pruning_rate": [0.0, 0.5]}, cv=2)
    search.fit(X, y)
    assert len(search.cv_results_["mean_test_score"]) == 2
    best = search.best_estimator_[-1]
    assert best.sparsity_ == pytest.approx(best.pruning_rate, abs=0.01)
    # a pruned net inside a fitted pipeline can be cloned and refitted
    pipe.set_params(prunablenetclassifier__pruning_rate=0.5).fit(X, y)
    assert clone(pipe).fit(X, y)[-1].sparsity_ == pytest.approx(0.5, abs=0.01)


# ---------------------------------------------------------------------------------------------
# bad input: a clear error, nothing lost
# ---------------------------------------------------------------------------------------------
def test_prune_before_fit_is_not_fitted():
    with pytest.raises(NotFittedError):
        make_net().prune(0.5)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "half", None])
def test_bad_rate_names_parameter_and_leaves_net_unchanged(fitted_net, tabular, rate):
    X, _, _ = tabular
    before, proba = _weights(fitted_net), fitted_net.predict_proba(X)
    with pytest.raises(ValueError, match="rate"):
        fitted_net.prune(rate)
    _assert_same_state(before, fitted_net)
    np.testing.assert_array_equal(fitted_net.predict_proba(X), proba)
    assert fitted_net.dense_state_dict_ is None


def test_unknown_method_lists_valid_ones(fitted_net):
    before = _weights(fitted_net)
    with pytest.raises(ValueError, match="global_magnitude"):
        fitted_net.prune(0.5, method="magic")
    _assert_same_state(before, fitted_net)


def test_lower_rate_than_current_sparsity_leaves_pruned_net_unchanged(fitted_net, tabular):
    X, _, _ = tabular
    fitted_net.prune(0.8)
    before, proba = _weights(fitted_net), fitted_net.predict_proba(X)
    with pytest.raises(ValueError):
        fitted_net.prune(0.3)
    _assert_same_state(before, fitted_net)
    np.testing.assert_array_equal(fitted_net.predict_proba(X), proba)
    assert fitted_net.sparsity_ == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"pruning_rate": 1.2}, "pruning_rate"),
        ({"pruning_method": "magic"}, "pruning_method"),
        ({"pruning_schedule": "weekly"}, "pruning_schedule"),
        ({"fine_tune_epochs": -1}, "fine_tune_epochs"),
        ({"keep_dense": ("nope",)}, "nope"),
    ],
)
def test_bad_params_fail_fit_and_leave_fitted_net_unchanged(fitted_net, tabular, params, match):
    X, y, _ = tabular
    before, proba = _weights(fitted_net), fitted_net.predict_proba(X)
    fitted_net.set_params(**params)
    with pytest.raises(ValueError, match=match):
        fitted_net.fit(X, y)
    _assert_same_state(before, fitted_net)
    np.testing.assert_array_equal(fitted_net.predict_proba(X), proba)


def test_nan_input_is_a_clear_error_and_leaves_net_unchanged(fitted_net, tabular):
    X, y, _ = tabular
    before = _weights(fitted_net)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted_net.fit(bad, y)
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fitted_net.partial_fit(bad, y)
    with pytest.raises(ValueError, match="infinity"):
        fitted_net.predict(bad)
    _assert_same_state(before, fitted_net)


def test_wrong_number_of_features_at_predict(fitted_net, tabular):
    X, _, _ = tabular
    with pytest.raises(ValueError, match="features"):
        fitted_net.predict(X[:, :5])


def test_unseen_label_in_partial_fit_is_rejected(fitted_net, tabular):
    X, y, _ = tabular
    before = _weights(fitted_net)
    with pytest.raises(ValueError, match="labels not seen in fit"):
        fitted_net.partial_fit(X, np.where(y == 1, 7, 0))
    _assert_same_state(before, fitted_net)


def test_single_class_and_regression_targets_are_rejected(tabular):
    X, y, _ = tabular
    with pytest.raises(ValueError, match="one class"):
        make_net().fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="Unknown label type"):
        make_net().fit(X, np.linspace(0, 1, len(y)))


def test_negative_sample_weight_is_rejected(tabular):
    X, y, _ = tabular
    with pytest.raises(ValueError, match="[Nn]egative"):
        make_net().fit(X, y, sample_weight=-np.ones(len(y)))


def test_error_inside_training_restores_previous_fit(fitted_net, tabular):
    X, y, _ = tabular
    before, proba = _weights(fitted_net), fitted_net.predict_proba(X)

    class Boom(Callback):
        def on_epoch_end(self, net, **kwargs):
            raise RuntimeError("boom")

    fitted_net.set_params(callbacks=[("boom", Boom())])
    with pytest.raises(RuntimeError, match="boom"):
        fitted_net.fit(X, y)
    _assert_same_state(before, fitted_net)
    np.testing.assert_array_equal(fitted_net.predict_proba(X), proba)


def test_criterion_default_is_cross_entropy():
    assert PrunableNetClassifier(MLP).criterion is torch.nn.CrossEntropyLoss


def test_batch_slicing_iterator_trains_exactly_like_skorchs_per_sample_loader(tabular):
    from torch.utils.data import default_collate

    X, y, _ = tabular
    weight = np.where(y == 1, 2.0, 1.0)
    fast = make_net(train_split=ValidSplit(0.2, random_state=0)).fit(X, y, sample_weight=weight)
    # a collate_fn sends the net down skorch's own sample-by-sample DataLoader path
    slow = make_net(
        train_split=ValidSplit(0.2, random_state=0),
        iterator_train__collate_fn=default_collate,
        iterator_valid__collate_fn=default_collate,
    ).fit(X, y, sample_weight=weight)
    for key, value in slow.module_.state_dict().items():
        torch.testing.assert_close(fast.module_.state_dict()[key], value)
    np.testing.assert_allclose(fast.predict_proba(X), slow.predict_proba(X), rtol=1e-5)


def test_history_batch_sizes_are_skorchs(tabular):
    X, y, _ = tabular
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    for fit_params in ({}, {"sample_weight": weight}):  # X alone, and a dict with metadata
        net = make_net(max_epochs=1, batch_size=16, train_split=ValidSplit(4)).fit(
            X, y, **fit_params
        )
        for prefix, n in (("train", len(y) - len(y) // 4), ("valid", len(y) // 4)):
            sizes = net.history[-1, "batches", :, f"{prefix}_batch_size"]
            assert sizes == [16] * (n // 16) + ([n % 16] if n % 16 else []), prefix


def test_criterion_gives_per_sample_losses_and_get_loss_reduces_like_torch(tabular):
    X, y, _ = tabular
    class_weight = torch.tensor([0.3, 2.0])
    net = make_net(max_epochs=1, criterion__weight=class_weight).fit(X, y)
    assert net.criterion_.reduction == "none"
    logits = torch.randn(20, 2)
    target = torch.as_tensor(y[:20])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=class_weight)
    torch.testing.assert_close(net.get_loss(logits, target), expected)
    assert net.per_sample_loss(logits, target).shape == (20,)
    criterion = torch.nn.CrossEntropyLoss()  # an instance: copied, not changed
    net = make_net(max_epochs=1, criterion=criterion).fit(X, y)
    assert criterion.reduction == "mean" and net.criterion_.reduction == "none"
    with pytest.raises(ValueError, match=r"criterion__reduction must be 'none' \(got 'sum'\)"):
        make_net(max_epochs=1, criterion__reduction="sum").fit(X, y)


def test_per_batch_callbacks_are_still_called(tabular):
    X, y, _ = tabular

    class Count(Callback):
        def initialize(self):
            self.calls = {"begin": 0, "grad": 0, "end": 0}
            return self

        def on_batch_begin(self, net, **kwargs):
            self.calls["begin"] += 1

        def on_grad_computed(self, net, named_parameters, **kwargs):
            self.calls["grad"] += 1

        def on_batch_end(self, net, **kwargs):
            self.calls["end"] += 1

    count = Count()
    net = make_net(max_epochs=2, batch_size=50, callbacks=[("count", count)]).fit(X, y)
    n_batches = sum(len(row["batches"]) for row in net.history)
    assert count.calls == {"begin": n_batches, "grad": n_batches, "end": n_batches}
