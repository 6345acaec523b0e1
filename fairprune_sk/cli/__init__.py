"""The ``fairprune`` command line: the parser assembly and ``main()``.

One module per subcommand: ``audit`` (audit.py), ``explain`` (explain.py), ``benchmark``
(benchmark_cli.py); argparse types shared by them in _types.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairprune",
        description="Audit and mitigate the disparate impact of pruning on groups.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    from .audit import add_audit_parser

    add_audit_parser(commands)

    from .benchmark import add_benchmark_parser

    add_benchmark_parser(commands)

    from .explain import add_explain_parser

    add_explain_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fairprune`` console script."""
    args = build_parser().parse_args(argv)
    import torch

    threads = torch.get_num_threads()
    try:
        args.handler(args)  # sets torch's threads to --threads (_types.DEFAULT_THREADS)
    finally:
        torch.set_num_threads(threads)  # as it was, for a caller that runs main() in-process
    return 0


if __name__ == "__main__":
    sys.exit(main())
