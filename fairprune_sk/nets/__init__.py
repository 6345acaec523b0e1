"""PrunableNetClassifier: the prunable skorch estimator, its batches, state, persistence and
callbacks."""

from ._callbacks import PruningLog, TerminalPrintLog
from ._classifier import NOT_TRAINABLE, PRUNING_SCHEDULES, PrunableNetClassifier

__all__ = ["NOT_TRAINABLE", "PRUNING_SCHEDULES", "PrunableNetClassifier", "PruningLog",
           "TerminalPrintLog"]
