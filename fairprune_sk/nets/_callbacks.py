"""The callbacks a prunable net adds to skorch's defaults: the phase/sparsity log, a quieter
``PrintLog``, and a ``valid_acc`` scorer on the label-encoded data."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, PrintLog

from .. import pruning

__all__ = ["PruningLog", "TerminalPrintLog", "index_accuracy"]


def index_accuracy(net: NeuralNetClassifier, X: Any, y: Any) -> float:
    """Validation accuracy on the internal (label-encoded) data, for skorch's ``valid_acc``."""
    proba = NeuralNetClassifier.predict_proba(net, X)
    return float(np.mean(proba.argmax(axis=1) == np.asarray(y)))


class PruningLog(Callback):
    """Records each epoch's phase (``train`` / ``fine_tune``) and sparsity in ``history``."""

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        net.history.record("phase", getattr(net, "phase_", "train"))
        net.history.record("sparsity", float(pruning.sparsity(net.module_)))


class TerminalPrintLog(PrintLog):
    """skorch's ``PrintLog`` that colours the best values only when they go to a terminal.

    skorch marks each epoch's best scores with ANSI colour codes; in a log file (stdout not a
    terminal, or a ``sink`` other than ``print``) they are noise, so the values are printed plain.
    ``NO_COLOR`` in the environment (no-color.org) turns colours off on a terminal too.
    """

    def format_row(self, row: Any, key: str, color: str) -> Any:
        stream = sys.stdout
        colours = (self.sink is print and not os.environ.get("NO_COLOR")
                   and hasattr(stream, "isatty") and stream.isatty())
        if not colours and row.get(f"{key}_best"):
            row = {**row, f"{key}_best": False}  # the same number, without the colour codes
        return super().format_row(row, key, color)
