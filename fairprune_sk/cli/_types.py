"""argparse types and actions shared by the ``fairprune`` subcommands.

Every value is checked once, at parse time, by the type of its flag: a bad value is one line on
stderr naming the flag (:class:`OneLineParser`) and exit status 2, before any data is loaded or
any net is trained.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class LazyChoices(Sequence[str]):
    """Choices read when first needed (to check a value or print the help), so that building
    a parser imports nothing heavy: ``LazyChoices("fairprune_sk.pruning", "PRUNING_METHODS")``.
    """

    def __init__(self, module: str, name: str, exclude: str | None = None) -> None:
        self.module, self.name, self.exclude = module, name, exclude

    def _values(self) -> Sequence[str]:
        import importlib

        found = importlib.import_module(self.module)
        excluded = set(getattr(found, self.exclude)) if self.exclude else set()
        return [value for value in getattr(found, self.name) if value not in excluded]

    def __getitem__(self, index: Any) -> Any:
        return self._values()[index]

    def __len__(self) -> int:
        return len(self._values())

    def __contains__(self, value: object) -> bool:
        return value in self._values()


class Distinct(argparse.Action):
    """A ``nargs="+"`` action that rejects a value given twice (``--rates 0.5 0.5``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        values = list(values)
        repeated = [value for k, value in enumerate(values) if value in values[:k]]
        if repeated:
            raise argparse.ArgumentError(
                self, f"{', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in repeated)}"
                      " given twice; give each value once")
        setattr(namespace, self.dest, values)


def _parse(kind: Callable[[str], Any], value: str, expected: str) -> Any:
    """``kind(value)``, or argparse's one-line error ``expected <expected>, got <value>``."""
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An int >= ``minimum``."""

    def parse(value: str) -> int:
        number = _parse(int, value, "an integer")
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {value}")
        return number

    parse.__name__ = f"int>={minimum}"
    return parse


def positive_float(value: str) -> float:
    """A finite float > 0."""
    number = _parse(float, value, "a number")
    if not (number > 0 and number != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {value}")
    return number


def pruning_rate(value: str) -> float:
    """A pruning rate in [0, 1)."""
    rate = _parse(float, value, "a number in [0, 1)")
    if not 0.0 <= rate < 1.0:
        raise argparse.ArgumentTypeError(f"a pruning rate must be in [0, 1); got {value}")
    return rate


#: ``--bits`` when ``--compress quantize`` is given without it.
DEFAULT_BITS = (8, 4, 3, 2)


def quantization_bits(value: str) -> int:
    """A weight width in bits, an int in [2, 8]."""
    bits = _parse(int, value, "an integer in [2, 8]")
    if not 2 <= bits <= 8:
        raise argparse.ArgumentTypeError(f"a bit width must be an integer in [2, 8]; got {value}")
    return bits


def add_compression_options(group: Any, rates_help: str) -> None:
    """``--compress {prune,quantize}`` and ``--bits``, beside a ``--rates`` option that
    defaults to None (see :func:`compression_levels`)."""
    group.add_argument("--compress", choices=["prune", "quantize"], default="prune",
                       help="prune each copy of the dense net at --rates (default), or quantize "
                            "it (simulated symmetric weights per output channel) to --bits")
    group.add_argument("--bits", nargs="+", type=quantization_bits, action=Distinct,
                       default=None, metavar="BITS",
                       help="distinct weight widths in [2, 8] of --compress quantize, in place "
                            f"of --rates (default: {' '.join(map(str, DEFAULT_BITS))}); "
                            + rates_help)


def compression_levels(command: str, args: argparse.Namespace,
                       default_rates: Sequence[float]) -> list[float] | list[int]:
    """The rates (``--compress prune``) or bit widths (``--compress quantize``) to run; a flag
    of the other compression is one line on stderr and exit status 2, before anything runs."""
    if args.compress == "quantize":
        if args.rates is not None:
            command_error(command, "--rates does not apply to --compress quantize (give the "
                                   "bit widths with --bits)")
        return list(DEFAULT_BITS) if args.bits is None else list(args.bits)
    if args.bits is not None:
        command_error(command, "--bits needs --compress quantize (pruning takes --rates)")
    return list(default_rates) if args.rates is None else list(args.rates)


def _prove_writable(path: Path, value: str) -> None:
    """Create ``path`` (and the folders it needs) and remove them again; ``ArgumentTypeError``
    naming ``value`` if that fails. An existing file is opened for appending, not truncated."""
    made: list[Path] = []
    folder = path.parent
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    try:
        for new in reversed(made):
            new.mkdir()
        if path.exists():
            with open(path, "a"):
                pass
        else:
            path.touch()
            path.unlink()
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot write {value!r}: {exc.strerror or exc}") from None
    finally:
        for new in made:
            try:
                new.rmdir()
            except OSError:
                pass


def input_file(extensions: Sequence[str]) -> Callable[[str], Path]:
    """An existing file with one of ``extensions`` (case ignored)."""

    def parse(value: str) -> Path:
        path = Path(value)
        if path.suffix.lower() not in extensions:
            raise argparse.ArgumentTypeError(
                f"must end in {' or '.join(extensions)}; got {value!r}")
        if not path.is_file():
            raise argparse.ArgumentTypeError(
                f"{value!r} {'is a folder' if path.is_dir() else 'does not exist'}")
        return path

    parse.__name__ = "input file"
    return parse


def output_file(extensions: Sequence[str]) -> Callable[[str], Path]:
    """A file path with one of ``extensions`` that can be written: the file (and any missing
    folder) is created and removed at parse time, before any data loads."""

    def parse(value: str) -> Path:
        path = Path(value)
        if path.suffix not in extensions:
            raise argparse.ArgumentTypeError(
                f"must end in {' or '.join(extensions)}; got {value!r}"
            )
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{value!r} is a folder; give a file name")
        existing = path.parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise argparse.ArgumentTypeError(
                f"cannot create the folder of {value!r}: {existing} is a file")
        _prove_writable(path, value)
        return path

    parse.__name__ = "output file"
    return parse


def float_in(low: float, high: float, *, closed: str = "neither",
             name: str = "a number") -> Callable[[str], float]:
    """A float in the interval from ``low`` to ``high``; ``closed`` is ``"neither"``, ``"left"``,
    ``"right"`` or ``"both"``, as sklearn's ``Interval``."""
    left, right = closed in ("left", "both"), closed in ("right", "both")
    interval = f"{'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"

    def parse(value: str) -> float:
        number = _parse(float, value, f"{name} in {interval}")
        inside = ((low <= number if left else low < number)
                  and (number <= high if right else number < high))
        if not inside:
            raise argparse.ArgumentTypeError(f"{name} must be in {interval}; got {value}")
        return number

    parse.__name__ = f"{name} in {interval}"
    return parse


def nonnegative_float(value: str) -> float:
    """A finite float >= 0."""
    number = _parse(float, value, "a number")
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {value}")
    return number


def n_jobs(value: str) -> int:
    """joblib's ``n_jobs``: an int >= 1, or negative (-1: all cores); never 0."""
    number = _parse(int, value, "an integer")
    if number == 0:
        raise argparse.ArgumentTypeError("must be an integer >= 1, or -1 for all cores; got 0")
    return number


def output_folder(value: str) -> Path:
    """A folder that can be written: a probe file (and any missing folder) is created and
    removed at parse time, before any data loads."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a file; give a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot create the folder {value!r}: {existing} is a file")
    _prove_writable(path / ".fairprune-write-probe", value)
    return path


def torch_device(value: str) -> str:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``, ...) that this machine has."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"not a torch device: {value!r} (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{value!r}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{value!r}: MPS is not available on this machine")
    return value


#: The torch-threads policy of every ``fairprune`` subcommand: one thread unless ``--threads``
#: says otherwise. Small nets on a busy machine train fastest with one thread (docs/benchmark.md
#: measures it), and with one thread a run's numbers depend neither on the machine's core count
#: nor on the benchmark's ``--n-jobs``.
DEFAULT_THREADS = 1


def add_threads_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--threads N``: torch CPU threads, :data:`DEFAULT_THREADS` by default."""
    parser.add_argument(
        "--threads", type=int_at_least(1), default=DEFAULT_THREADS,
        help=f"torch CPU threads{what} (default {DEFAULT_THREADS}: fastest on a busy machine, "
             "and the numbers do not depend on the core count; more can help on idle cores)")


def command_error(command: str, message: str) -> NoReturn:
    """One line on stderr naming the problem, exit status 2 (argparse's), no traceback."""
    print(f"fairprune {command}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads, restored afterwards (for a caller that runs
    :func:`~fairprune_sk.cli.main` in-process)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
