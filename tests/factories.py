"""The one factory of the tests' small nets: ``PrunableNetClassifier`` and ``FairConstrainedNet``.

Every test module builds its nets here, so a changed default (a new required parameter, a
different optimizer) is changed once.
"""

from __future__ import annotations

from typing import Any

from fairprune_sk import FairConstrainedNet, PrunableNetClassifier
from fairprune_sk.models import MLP

#: A 2-layer MLP (16, 16) that trains in a fraction of a second on ``tabular``.
SMALL_NET: dict[str, Any] = dict(
    module=MLP,
    module__hidden_units=(16, 16),
    max_epochs=5,
    lr=0.1,
    batch_size=64,
    random_state=0,
    verbose=0,
)
#: The smaller net of scikit-learn's estimator checks (they fit it hundreds of times).
CHECKS_NET: dict[str, Any] = dict(SMALL_NET, module__hidden_units=(8,), max_epochs=8,
                                  batch_size=32)
#: What a constrained net adds to :data:`SMALL_NET`: a dual step large enough to act.
FAIR_DEFAULTS: dict[str, Any] = dict(dual_lr=0.5)


def make_net(cls: type = PrunableNetClassifier, /, **params: Any) -> Any:
    """``cls(**SMALL_NET)`` with ``params`` overriding (``make_net(max_epochs=2)``)."""
    return cls(**{**SMALL_NET, **params})


def make_fair(**params: Any) -> FairConstrainedNet:
    """A :class:`FairConstrainedNet` like :func:`make_net`'s, ``dual_lr=0.5`` by default."""
    return make_net(FairConstrainedNet, **{**FAIR_DEFAULTS, **params})
