"""What a sweep prints: one progress line per finished run, the summary over seeds."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import pandas as pd

from .methods import MethodResult
from .summary import format_summary

__all__ = ["PRINTED_SUMMARY", "PRINTED_TRAIN_SUMMARY", "print_summary"]


class _Progress:
    """One line per finished run: a text bar, the run, its result and the elapsed time."""

    def __init__(self, stream: TextIO, width: int = 20, level: str = "rate") -> None:
        self.stream = stream
        self.width = width
        self.level = level  # "rate", or "bits" for a quantization sweep
        self.start = time.perf_counter()

    def __call__(self, result: MethodResult, done: int, total: int) -> None:
        filled = round(self.width * done / total)
        bar = "#" * filled + "-" * (self.width - filled)
        s = result.summary
        digits = len(str(total))
        print(f"[{bar}] {done:>{digits}}/{total} {result.method:<11} "
              f"{self.level}={result.rate:<5g} seed={result.seed}  acc={s['accuracy']:.4f} "
              f"xi={s['fairness_violation']:.4f} max_psi={s['max_excess_accuracy_gap']:.4f}  "
              f"{result.seconds:6.1f} s  "
              f"(elapsed {time.perf_counter() - self.start:.1f} s)",
              file=self.stream, flush=True)


#: Metrics of the summary over seeds printed at the end of a sweep (test, then training data).
PRINTED_SUMMARY = ("accuracy", "fairness_violation", "max_excess_accuracy_gap",
                   "worst_group_accuracy")
PRINTED_TRAIN_SUMMARY = tuple(f"train_{name}" for name in PRINTED_SUMMARY)


def print_summary(summary: pd.DataFrame, stream: TextIO | None = None) -> None:
    """Print :func:`run_sweep`'s summary as ``mean [low, high]`` (95 % t-interval over seeds).

    Test metrics first, then the same on the training data. With a single seed the interval is
    undefined: only the mean is printed, and a line says so.
    """
    stream = sys.stdout if stream is None else stream
    n_seeds = summary[("n_seeds", "")]
    if (n_seeds < 2).any():
        print("(one seed: no interval over seeds; run --seeds 3 or more to see the seed noise)",
              file=stream)
    with pd.option_context("display.width", 250, "display.max_columns", 20,
                           "display.max_colwidth", 40):
        for columns, what in ((PRINTED_SUMMARY, "test data"),
                              (PRINTED_TRAIN_SUMMARY, "training data")):
            present = [c for c in columns if c in summary.columns.get_level_values(0)]
            if present:
                print(f"\n{what}:", file=stream)
                print(format_summary(summary, present).to_string(), file=stream)
