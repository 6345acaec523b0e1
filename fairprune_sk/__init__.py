"""fairprune-sk: prune neural networks without hurting some groups more than others.

Public names only; the implementation lives in one module per concept.
"""

from .constrained import FairConstrainedNet
from .diagnostics import GroupDiagnostics
from .metrics import ExcessRiskFrame, accuracy_gap, excess_risk, fairness_violation
from .nets import PrunableNetClassifier

__version__ = "0.1.0.dev0"

__all__ = [
    "ExcessRiskFrame",
    "FairConstrainedNet",
    "GroupDiagnostics",
    "PrunableNetClassifier",
    "accuracy_gap",
    "excess_risk",
    "fairness_violation",
]
