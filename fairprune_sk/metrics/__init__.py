"""Per-group audit of pruning: R(a) (eq. 2), ξ (eq. 3), ψ_g, ``ExcessRiskFrame``, scorers.

Equations refer to Tran, Fioretto, Kim and Naidu, *Pruning has a disparate impact on model
accuracy*, NeurIPS 2022 (arXiv 2205.13574); the excess accuracy gap ψ_g to Hashemizadeh et al.,
*Balancing Act*, ICLR 2024.
"""

from ._columns import COLUMN_DESCRIPTIONS, FRAME_COLUMNS, INTERVAL_COLUMNS, PER_SAMPLE_COLUMNS
from ._frame import ExcessRiskFrame
from ._functions import (
    accuracy_gap,
    excess_accuracy_gap,
    excess_risk,
    fairness_violation,
    worst_group_accuracy,
)
from ._groups import (
    GroupCodes,
    encode_labels,
    group_codes,
    group_mean,
    group_sum,
    per_sample_log_loss,
)
from ._scorers import (
    MISSING_SCORER_FEATURES,
    SCORER_METRICS,
    PruningScorer,
    make_pruning_scorer,
    pruning_scorers,
)

__all__ = [
    "COLUMN_DESCRIPTIONS",
    "FRAME_COLUMNS",
    "PER_SAMPLE_COLUMNS",
    "ExcessRiskFrame",
    "GroupCodes",
    "INTERVAL_COLUMNS",
    "MISSING_SCORER_FEATURES",
    "PruningScorer",
    "SCORER_METRICS",
    "accuracy_gap",
    "encode_labels",
    "excess_accuracy_gap",
    "excess_risk",
    "fairness_violation",
    "group_codes",
    "group_mean",
    "group_sum",
    "make_pruning_scorer",
    "per_sample_log_loss",
    "pruning_scorers",
    "worst_group_accuracy",
]
