"""scikit-learn's own estimator checks on PrunableNetClassifier."""

from __future__ import annotations

import warnings

from factories import CHECKS_NET, make_net
from sklearn.utils.estimator_checks import parametrize_with_checks

from fairprune_sk import FairConstrainedNet

warnings.filterwarnings("ignore", module="skorch")

#: Checks that a minibatch-SGD neural net cannot pass, each with the reason.
EXPECTED_FAILED_CHECKS = {
    "check_no_attributes_set_in_init": (
        "skorch's NeuralNet.__init__ stores routed module__*/optimizer__* arguments as attributes "
        "and creates history_/initialized_/virtual_params_; its get_params/set_params rely on it"
    ),
    "check_sample_weight_equivalence_on_dense_data": (
        "minibatch SGD: weight 2 and a repeated row give the same expected loss, but different "
        "batches and numbers of steps, so not the same weights"
    ),
}


def _estimators():
    # The pruning path (train, prune, fine-tune with masks) is the one that must hold up;
    # the dense path is the same code with pruning_rate=0.
    yield make_net(**CHECKS_NET, pruning_rate=0.5, fine_tune_epochs=2)
    yield make_net(**CHECKS_NET)
    # without sensitive features the constrained net must still be a plain sklearn classifier
    yield make_net(FairConstrainedNet, **CHECKS_NET, constraint_phase="none", pruning_rate=0.5,
                   fine_tune_epochs=1)


@parametrize_with_checks(
    list(_estimators()),
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
