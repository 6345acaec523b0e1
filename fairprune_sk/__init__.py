"""fairprune-sk: prune neural networks without hurting some groups more than others.

Public names only; the implementation lives in one module per concept. The names load on first
use (PEP 562), so ``import fairprune_sk`` alone imports neither torch nor skorch: auditing
outputs computed elsewhere (``fairprune audit --predictions``) needs neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_HOMES = {
    "ExcessRiskFrame": ".metrics",
    "FairConstrainedNet": ".constrained",
    "GroupDiagnostics": ".diagnostics",
    "PrunableNetClassifier": ".nets",
    "accuracy_gap": ".metrics",
    "excess_risk": ".metrics",
    "fairness_violation": ".metrics",
}

__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from .constrained import FairConstrainedNet
    from .diagnostics import GroupDiagnostics
    from .metrics import ExcessRiskFrame, accuracy_gap, excess_risk, fairness_violation
    from .nets import PrunableNetClassifier


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
