"""fairlearn's mitigators wrap our nets directly.

fairlearn's reductions (``ExponentiatedGradient``, ``GridSearch``) clone the estimator and call
``fit(X, y, sample_weight=w)``; ``ThresholdOptimizer`` calls ``fit(X, y)`` (``prefit=False``) and
reads ``predict_proba``, which must be float64 (float32 breaks it under pandas 3). Both nets are
wrapped as they are, with no adapter class.

``FairConstrainedNet`` needs ``sensitive_features`` in ``fit`` unless ``constraint_phase="none"``;
fairlearn keeps the sensitive features to itself (it never forwards them to the estimator's
``fit``), so a constrained ``FairConstrainedNet`` can only be wrapped prefit, and the other
combinations fail at once with the message that says how to call it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import DemographicParity, ExponentiatedGradient, GridSearch
from sklearn.base import clone
from sklearn.datasets import make_classification

from fairprune_sk import FairConstrainedNet, PrunableNetClassifier
from fairprune_sk.constrained import MISSING_SENSITIVE_FEATURES
from fairprune_sk.models import MLP

RATE = 0.5

pytestmark = pytest.mark.filterwarnings(
    # fairlearn 0.15's own pandas usage under pandas 3, not ours
    "ignore::FutureWarning:fairlearn.*",
    "ignore:Setting a value on a Series via .at:Warning",
    "ignore:Setting an item of incompatible dtype:Warning",
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny nets gain nothing from intra-op threads on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """300 rows; the group is strongly tied to the label, so demographic parity bites."""
    X, y = make_classification(
        n_samples=300, n_features=6, n_informative=4, random_state=0, class_sep=1.5
    )
    rng = np.random.default_rng(0)
    group = np.where(y + 0.4 * rng.normal(size=len(y)) > 0.5, "g1", "g0")
    return X, y, pd.Series(group, name="group")


def _params():
    return dict(
        module__hidden_units=(8,), max_epochs=3, lr=0.1, batch_size=64, random_state=0,
        verbose=0, pruning_rate=RATE,
    )


NETS = {
    "PrunableNetClassifier": lambda: PrunableNetClassifier(MLP, **_params()),
    "FairConstrainedNet": lambda: FairConstrainedNet(MLP, constraint_phase="none", **_params()),
}


def _selection_gap(pred, A) -> float:
    return demographic_parity_difference(pred, pred, sensitive_features=A)


def _assert_pruned(net, expected_class):
    assert type(net) is expected_class
    assert net.sparsity_ == pytest.approx(RATE, abs=0.01)
    assert net.dense_state_dict_ is not None


@pytest.mark.parametrize("name", NETS)
def test_predict_proba_is_float64(data, name):
    X, y, A = data
    fit_params = {"sensitive_features": A} if name == "FairConstrainedNet" else {}
    proba = NETS[name]().fit(X, y, **fit_params).predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NETS)
def test_exponentiated_gradient_wraps_the_net(data, name):
    X, y, A = data
    net = NETS[name]()
    mitigator = ExponentiatedGradient(net, DemographicParity(), max_iter=5, eps=0.02)
    mitigator.fit(X, y, sensitive_features=A)

    assert not hasattr(net, "module_")  # fairlearn fitted clones, not the given net
    assert len(mitigator.predictors_) >= 2
    for predictor in mitigator.predictors_:
        _assert_pruned(predictor, type(net))
    weights = mitigator.weights_.to_numpy()
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    pred = mitigator.predict(X, random_state=0)
    assert set(np.unique(pred)) <= {0, 1}
    pmf = mitigator._pmf_predict(X)
    assert pmf.shape == (len(X), 2)
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", NETS)
def test_grid_search_wraps_the_net(data, name):
    X, y, A = data
    net = NETS[name]()
    mitigator = GridSearch(net, DemographicParity(), grid_size=3)
    mitigator.fit(X, y, sensitive_features=A)

    assert len(mitigator.predictors_) == 3
    for predictor in mitigator.predictors_:
        _assert_pruned(predictor, type(net))
    # the grid's Lagrange multipliers reweight the samples: the nets differ
    probas = [p.predict_proba(X) for p in mitigator.predictors_]
    assert not np.allclose(probas[0], probas[-1])
    assert set(np.unique(mitigator.predict(X))) <= {0, 1}


@pytest.mark.parametrize("name", NETS)
def test_threshold_optimizer_prefit(data, name):
    X, y, A = data
    fit_params = {"sensitive_features": A} if name == "FairConstrainedNet" else {}
    net = NETS[name]().fit(X, y, **fit_params)
    before = net.predict_proba(X)
    optimizer = ThresholdOptimizer(
        estimator=net, constraints="demographic_parity", predict_method="predict_proba",
        prefit=True,
    ).fit(X, y, sensitive_features=A)

    assert optimizer.estimator_ is net
    np.testing.assert_array_equal(net.predict_proba(X), before)  # the net is not refitted
    raw = net.predict(X)
    mitigated = optimizer.predict(X, sensitive_features=A, random_state=0)
    assert set(np.unique(mitigated)) <= set(net.classes_)
    # the constraint bites: thresholds move and the selection-rate gap shrinks
    assert (mitigated != raw).mean() > 0.05
    assert _selection_gap(mitigated, A) < 0.5 * _selection_gap(raw, A)
    proba = optimizer._pmf_predict(X, sensitive_features=A)
    assert proba.dtype == np.float64 and proba.shape == (len(X), 2)


@pytest.mark.parametrize("name", NETS)
def test_threshold_optimizer_fits_a_clone(data, name):
    X, y, A = data
    net = NETS[name]()
    optimizer = ThresholdOptimizer(
        estimator=net, constraints="demographic_parity", predict_method="predict_proba",
        prefit=False,
    ).fit(X, y, sensitive_features=A)

    assert not hasattr(net, "module_")
    _assert_pruned(optimizer.estimator_, type(net))
    # the same net fitted by hand gives the same scores: fairlearn just called fit(X, y)
    np.testing.assert_allclose(
        optimizer.estimator_.predict_proba(X), clone(net).fit(X, y).predict_proba(X),
        rtol=1e-6, atol=1e-7,
    )
    mitigated = optimizer.predict(X, sensitive_features=A, random_state=0)
    assert set(np.unique(mitigated)) <= {0, 1}
    assert _selection_gap(mitigated, A) < _selection_gap(optimizer.estimator_.predict(X), A)


# --------------------------------------------------------------------------------------------
# what cannot work by design: a constrained FairConstrainedNet needs the groups in fit
# --------------------------------------------------------------------------------------------
MITIGATORS_THAT_FIT = {
    "ExponentiatedGradient": lambda net: ExponentiatedGradient(net, DemographicParity(),
                                                               max_iter=2),
    "GridSearch": lambda net: GridSearch(net, DemographicParity(), grid_size=2),
    "ThresholdOptimizer(prefit=False)": lambda net: ThresholdOptimizer(
        estimator=net, predict_method="predict_proba", prefit=False
    ),
}


@pytest.mark.parametrize("mitigator", MITIGATORS_THAT_FIT)
def test_constrained_net_refitted_by_fairlearn_says_what_to_do(data, mitigator):
    X, y, A = data
    params = _params()
    params["pruning_rate"] = 0.0
    net = FairConstrainedNet(MLP, **params)  # constraint_phase="after": needs the groups
    expected = MISSING_SENSITIVE_FEATURES.format(name="FairConstrainedNet", phase="after")
    with pytest.raises(ValueError) as info:
        MITIGATORS_THAT_FIT[mitigator](net).fit(X, y, sensitive_features=A)
    assert str(info.value) == expected
