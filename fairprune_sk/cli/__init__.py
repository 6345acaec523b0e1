"""The ``fairprune`` command line: the parser assembly and :func:`main`.

One module per subcommand (``audit``, ``explain``, ``benchmark``); the data and net options
they share are in ``_data_options``, the argparse types in ``_types``. A subcommand's options
are added when it is chosen, so that each imports only what it needs (``fairprune audit
--predictions`` never imports torch).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ._types import OneLineParser


class _Subcommands(argparse._SubParsersAction):
    """Subcommands whose options are added by a builder when the subcommand is chosen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._builders: dict[str, Callable[[argparse.ArgumentParser], None]] = {}

    def add_command(self, name: str, builder: Callable[[argparse.ArgumentParser], None],
                    **kwargs: Any) -> argparse.ArgumentParser:
        """``add_parser(name, **kwargs)``; ``builder(parser)`` adds its options when chosen."""
        self._builders[name] = builder
        return self.add_parser(name, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        builder = self._builders.pop(values[0], None)
        if builder is not None:
            builder(self.choices[values[0]])
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    """The ``fairprune`` parser with its three subcommands."""
    from .audit import AUDIT_COMMAND, add_audit_options
    from .benchmark import BENCHMARK_COMMAND, add_benchmark_options
    from .explain import EXPLAIN_COMMAND, add_explain_options

    parser = OneLineParser(
        prog="fairprune",
        description="Audit and mitigate the disparate impact of pruning on groups.",
    )
    parser.register("action", "parsers", _Subcommands)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_command("audit", add_audit_options, **AUDIT_COMMAND)
    commands.add_command("benchmark", add_benchmark_options, **BENCHMARK_COMMAND)
    commands.add_command("explain", add_explain_options, **EXPLAIN_COMMAND)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fairprune`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0; a user error exits with status 2 and one line on stderr, failed benchmark runs
        with status 1.
    """
    args = build_parser().parse_args(argv)
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        args.handler(args)
    finally:
        warnings.formatwarning = shown
    return 0


def _one_line_warning(message: Warning | str, category: type[Warning], *args: Any,
                      **kwargs: Any) -> str:
    """A warning as the command line shows it: one line, without the source line."""
    return f"fairprune: warning: {message}\n"


if __name__ == "__main__":
    sys.exit(main())
