"""The one helper of the command-line tests that check user errors."""

from __future__ import annotations

import pytest

from fairprune_sk.cli import main


def one_line_error(capsys, argv, exit_code=2):
    """Run ``main(argv)``; the stderr line of its user error (exactly one line, exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == exit_code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = err.splitlines()
    return line
