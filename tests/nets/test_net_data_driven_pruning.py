"""A data-driven pruning method through the nets: prune(rate, method, X=, y=,
sensitive_features=) and fit with such a pruning_method hand the validated, encoded data to
pruning.prune_module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import make_fair, make_net

from fairprune_sk import pruning
from fairprune_sk.metrics import group_codes

METHOD = pruning.DATA_DRIVEN_METHODS[0]


def masks(module):
    return {key: value for key, value in module.state_dict().items() if key.endswith("_mask")}


def assert_same_masks(net, reference):
    ours, theirs = masks(net.module_), masks(reference)
    assert ours.keys() == theirs.keys() and ours
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_prune_hands_the_encoded_data_to_prune_module(tabular):
    X, y, group = tabular
    labels = np.array(["no", "yes"])[y]
    net = make_net().fit(X, labels)
    reference = pruning.unpruned_copy(net.module_)
    net.prune(0.6, METHOD, X=X, y=labels, sensitive_features=group)
    pruning.prune_module(reference, 0.6, METHOD, X=X.astype(np.float32), y=y,
                         groups=group_codes(group).codes, batch_size=net.batch_size)
    assert_same_masks(net, reference)
    np.testing.assert_allclose(  # θ* is the module before the data-driven prune
        net.dense_reference().predict_proba(X),
        make_net().fit(X, labels).predict_proba(X), atol=1e-6)


def test_without_groups_one_group(tabular):
    X, y, _ = tabular
    net = make_net().fit(X, y)
    reference = pruning.unpruned_copy(net.module_)
    net.prune(0.5, METHOD, X=X, y=y)
    pruning.prune_module(reference, 0.5, METHOD, X=X.astype(np.float32), y=y,
                         groups=np.zeros(len(y), dtype=np.int64), batch_size=net.batch_size)
    assert_same_masks(net, reference)


def test_what_is_missing_is_named(fitted_net, tabular):
    X, y, group = tabular
    with pytest.raises(ValueError, match=rf"method='{METHOD}' ranks the weights with data: "
                                         "pass X= and y="):
        fitted_net.prune(0.5, METHOD)
    with pytest.raises(ValueError, match=r"pass y= \(the rows and their labels"):
        fitted_net.prune(0.5, METHOD, X=X)
    with pytest.raises(ValueError, match="'global_magnitude' ranks the weights alone and takes "
                                         "no data: leave out X, y, sensitive_features"):
        fitted_net.prune(0.5, "global_magnitude", X=X, y=y, sensitive_features=group)
    assert fitted_net.sparsity_ == 0.0 and fitted_net.dense_state_dict_ is None


def test_fit_prunes_on_the_training_rows_and_groups(tabular):
    X, y, group = tabular
    fair = make_fair(pruning_rate=0.6, pruning_method=METHOD, fine_tune_epochs=0)
    fair.fit(X, y, sensitive_features=group)
    reference = pruning.unpruned_copy(fair.dense_reference().module_)
    pruning.prune_module(reference, 0.6, METHOD, X=X.astype(np.float32), y=y,
                         groups=group_codes(group).codes, batch_size=fair.batch_size)
    assert_same_masks(fair, reference)
    plain = make_net(pruning_rate=0.6, pruning_method=METHOD).fit(X, y)  # one group
    reference = pruning.unpruned_copy(plain.dense_reference().module_)
    pruning.prune_module(reference, 0.6, METHOD, X=X.astype(np.float32), y=y,
                         groups=np.zeros(len(y), dtype=np.int64), batch_size=plain.batch_size)
    assert_same_masks(plain, reference)
    copy = fair.pruned_copy(0.8, X=X, y=y, sensitive_features=group)
    assert copy.sparsity_ == pytest.approx(0.8, abs=0.01) and fair.sparsity_ < 0.7
