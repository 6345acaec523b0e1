"""argparse types shared by the ``fairprune`` subcommands: every value is checked at parse time.

A bad value makes argparse print one line naming the flag and exit with status 2, before any data
is loaded or any net is trained.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An int >= ``minimum``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {value}")
        return number

    parse.__name__ = f"int>={minimum}"
    return parse


def positive_float(value: str) -> float:
    """A finite float > 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (number > 0 and number != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {value}")
    return number


def pruning_rate(value: str) -> float:
    """A pruning rate in [0, 1)."""
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}") from None
    if not 0.0 <= rate < 1.0:
        raise argparse.ArgumentTypeError(f"a pruning rate must be in [0, 1); got {value}")
    return rate


def output_file(extensions: Sequence[str]) -> Callable[[str], Path]:
    """A file path with one of ``extensions`` whose folder exists (or can be made) and is
    writable."""

    def parse(value: str) -> Path:
        path = Path(value)
        if path.suffix not in extensions:
            raise argparse.ArgumentTypeError(
                f"must end in {' or '.join(extensions)}; got {value!r}"
            )
        folder = path.parent.resolve()
        existing = folder
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise argparse.ArgumentTypeError(
                f"cannot create the folder of {value!r}: {existing} is a file"
            )
        if not os.access(existing, os.W_OK):
            raise argparse.ArgumentTypeError(f"the folder {existing} is not writable")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{value!r} is a folder; give a file name")
        return path

    parse.__name__ = "output file"
    return parse
