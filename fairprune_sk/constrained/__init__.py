"""FairConstrainedNet: pruning and fine-tuning under per-group constraints by Lagrangian duality.

The estimator, the batch Lagrangian of each target, the dual dynamics (pure functions) and the
callback that takes the dual steps.
"""

from ._callback import DualAscent
from ._constraints import DivergenceError
from ._estimator import (
    CONSTRAINT_PHASES,
    CONSTRAINT_TARGETS,
    DUAL_DYNAMICS,
    MISSING_SENSITIVE_FEATURES,
    TARGET_DEFAULTS,
    FairConstrainedNet,
)

__all__ = [
    "CONSTRAINT_PHASES",
    "CONSTRAINT_TARGETS",
    "DUAL_DYNAMICS",
    "MISSING_SENSITIVE_FEATURES",
    "TARGET_DEFAULTS",
    "DivergenceError",
    "DualAscent",
    "FairConstrainedNet",
]
