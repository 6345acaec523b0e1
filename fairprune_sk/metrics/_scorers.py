"""Scorers for ``GridSearchCV`` / ``cross_validate``; sensitive features by metadata routing."""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.metadata_routing import MetadataRequest

from ._frame import ExcessRiskFrame

SCORER_METRICS = (
    "accuracy",
    "fairness_violation",
    "accuracy_gap",
    "max_excess_accuracy_gap",
    "combined",
)

#: ``validate_params`` constraints of a scorer's arguments.
SCORER_CONSTRAINTS = {
    "metric": [StrOptions(set(SCORER_METRICS))],
    "weight": [Interval(Real, 0, None, closed="left")],
}

MISSING_SCORER_FEATURES = (
    "the {metric!r} scorer needs sensitive_features: enable metadata routing with "
    "sklearn.set_config(enable_metadata_routing=True) and pass sensitive_features=A to "
    "GridSearchCV.fit / cross_validate(params=...), or call scorer(estimator, X, y, "
    "sensitive_features=A)"
)


def _final_step(estimator: Any, X: Any) -> tuple[Any, Any]:
    """The last step of a Pipeline and X transformed by the steps before it."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        return estimator[-1], estimator[:-1].transform(X)
    return estimator, X


class PruningScorer:
    """A scorer for ``GridSearchCV``/``cross_validate`` that audits the (pruned) net it scores.

    Greater is better, as for every sklearn scorer: violations are returned negated.
    ``sensitive_features`` is requested for ``score`` by default, so with metadata routing
    enabled it reaches the scorer from ``GridSearchCV.fit(X, y, sensitive_features=A)``.

    Parameters
    ----------
    metric : {"accuracy", "fairness_violation", "accuracy_gap", "max_excess_accuracy_gap", \
"combined"}
        ``accuracy`` of the net; ``fairness_violation`` −ξ (eq. 3) of the pruned net against its
        dense reference (0 for a net that was never pruned: it is its own reference);
        ``accuracy_gap`` −(max − min group accuracy); ``max_excess_accuracy_gap`` −max_g ψ_g;
        ``combined`` accuracy − weight·ξ.
    weight : float >= 0, default=1.0
        Weight of ξ in ``combined``.

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        A ``ValueError`` naming the argument, what it must be and the value got, for an unknown
        ``metric`` or a negative ``weight``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn import config_context
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.model_selection import cross_validate
    >>> from fairprune_sk import PrunableNetClassifier
    >>> from fairprune_sk.metrics import make_pruning_scorer, pruning_scorers
    >>> from fairprune_sk.models import MLP
    >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    >>> X = X.astype(np.float32)
    >>> group = np.where(X[:, 0] > 0, "a", "b")
    >>> net = PrunableNetClassifier(MLP, max_epochs=10, lr=0.1, pruning_rate=0.5, verbose=0,
    ...                             random_state=0)
    >>> scorer = make_pruning_scorer("fairness_violation")
    >>> xi = -scorer(net.fit(X, y), X, y, sensitive_features=group)  # greater is better: -xi
    >>> bool(xi >= 0)
    True
    >>> with config_context(enable_metadata_routing=True):
    ...     scores = cross_validate(net, X, y, cv=2, scoring=pruning_scorers(),
    ...                             params={"sensitive_features": group})
    >>> sorted(name for name in scores if name.startswith("test_"))
    ['test_accuracy', 'test_combined', 'test_neg_accuracy_gap', 'test_neg_fairness_violation',
     'test_neg_max_excess_accuracy_gap']
    """

    @validate_params(SCORER_CONSTRAINTS, prefer_skip_nested_validation=True)
    def __init__(self, metric: str, *, weight: float = 1.0) -> None:
        self.metric = metric
        self.weight = weight
        self._sensitive_features_request: bool | str | None = True

    def set_score_request(self, *, sensitive_features: bool | str | None = True) -> PruningScorer:
        """Request (True), refuse (False) or alias (a str) ``sensitive_features`` for scoring."""
        self._sensitive_features_request = sensitive_features
        return self

    def get_metadata_routing(self) -> MetadataRequest:
        """sklearn's routing request: ``score`` consumes ``sensitive_features``."""
        request = MetadataRequest(owner=self)
        request.score.add_request(
            param="sensitive_features", alias=self._sensitive_features_request
        )
        return request

    def __call__(self, estimator: Any, X: Any, y: Any, sensitive_features: Any = None) -> float:
        net, Xt = _final_step(estimator, X)
        if sensitive_features is None:
            if self.metric != "accuracy":
                raise ValueError(MISSING_SCORER_FEATURES.format(metric=self.metric))
            return float(np.mean(net.predict(Xt) == np.asarray(y).ravel()))
        pruned = getattr(net, "dense_state_dict_", None) is not None
        frame = ExcessRiskFrame(
            net, Xt, y, sensitive_features=sensitive_features, reference=None if pruned else net
        )
        accuracy = float(frame.overall["accuracy_pruned"])
        if self.metric == "accuracy":
            return accuracy
        if self.metric == "fairness_violation":
            return -frame.fairness_violation
        if self.metric == "accuracy_gap":
            return -frame.accuracy_gap
        if self.metric == "max_excess_accuracy_gap":
            return -frame.max_excess_accuracy_gap
        return accuracy - self.weight * frame.fairness_violation

    def __repr__(self) -> str:
        weight = f", weight={self.weight}" if self.metric == "combined" else ""
        return f"PruningScorer({self.metric!r}{weight})"


@validate_params(SCORER_CONSTRAINTS, prefer_skip_nested_validation=True)
def make_pruning_scorer(metric: str = "combined", *, weight: float = 1.0) -> PruningScorer:
    """A :class:`PruningScorer` (see there); ``combined`` is accuracy − weight · ξ.

    Examples
    --------
    >>> from fairprune_sk.metrics import make_pruning_scorer
    >>> make_pruning_scorer("combined", weight=2.0)
    PruningScorer('combined', weight=2.0)
    """
    return PruningScorer(metric, weight=weight)


@validate_params({"weight": SCORER_CONSTRAINTS["weight"]}, prefer_skip_nested_validation=True)
def pruning_scorers(weight: float = 1.0) -> dict[str, PruningScorer]:
    """All five scorers, for multi-metric ``scoring=`` (``refit`` picks the one to select on).

    Examples
    --------
    >>> from fairprune_sk.metrics import pruning_scorers
    >>> pruning_scorers(weight=0.5)["combined"]
    PruningScorer('combined', weight=0.5)
    """
    return {
        "accuracy": PruningScorer("accuracy"),
        "neg_fairness_violation": PruningScorer("fairness_violation"),
        "neg_accuracy_gap": PruningScorer("accuracy_gap"),
        "neg_max_excess_accuracy_gap": PruningScorer("max_excess_accuracy_gap"),
        "combined": PruningScorer("combined", weight=weight),
    }
