"""The ``fairprune`` command line: the parser assembly and :func:`main`.

One module per subcommand (``audit``, ``explain``, ``benchmark``); the data and net options
they share are in ``_data_options``, the argparse types in ``_types``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._types import OneLineParser


def build_parser() -> argparse.ArgumentParser:
    """The ``fairprune`` parser with its three subcommands."""
    from .audit import add_audit_parser
    from .benchmark import add_benchmark_parser
    from .explain import add_explain_parser

    parser = OneLineParser(
        prog="fairprune",
        description="Audit and mitigate the disparate impact of pruning on groups.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_audit_parser(commands)
    add_benchmark_parser(commands)
    add_explain_parser(commands)
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
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
