"""Every ```python block of README.md and docs/*.md runs as pasted, in order; so does every
Examples section of the package's docstrings (as doctests, one test per module).

The blocks of one page share one namespace, in page order, as a reader pasting them into one
session would. A block whose real call is slow says so on the page, in HTML comments just before
it that the rendered page hides but the source shows::

    <!-- test: max_epochs=10 -> max_epochs=1 -->
    <!-- test: requires dask -->

``OLD -> NEW`` is a textual substitution this test applies (OLD must occur in the block, so a
stale marker fails); ``requires MODULE`` skips the rest of the page where MODULE is not installed
(an optional extra). Everything else in the block runs exactly as printed. Besides the page's own
names, the namespace holds one helper for the markers: ``subsample(data, n)``, the first ``n``
training and test rows of a dataset Bunch such as ``load_adult()``'s.
"""

from __future__ import annotations

import doctest
import functools
import importlib
import operator
import re
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PACKAGE = ROOT / "fairprune_sk"
#: Modules with docstring examples (a ``>>>`` prompt), as ``fairprune_sk/...`` paths.
DOCTEST_MODULES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in PACKAGE.rglob("*.py")
    if ">>>" in path.read_text(encoding="utf-8")
)
PYTEST_OPTIONS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "pytest"]["ini_options"]
#: pyproject's ``doctest_optionflags``, so that ``pytest --doctest-modules`` agrees with this test.
DOCTEST_FLAGS = functools.reduce(
    operator.or_, (doctest.OPTIONFLAGS_BY_NAME[n] for n in PYTEST_OPTIONS["doctest_optionflags"]), 0
)

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"<!--\s*test:\s*(.*?)\s*-->")


def python_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """``(line, code, markers)`` for each ```python block; markers are the ``<!-- test: ... -->``
    comments on the lines right above the fence (blank lines between are allowed)."""
    blocks = []
    lines = text.splitlines()
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        markers: list[str] = []
        above = line - 2  # index of the line above the fence
        while above >= 0 and (not lines[above].strip() or MARKER.fullmatch(lines[above].strip())):
            found = MARKER.fullmatch(lines[above].strip())
            if found:
                markers.insert(0, found.group(1))
            above -= 1
        blocks.append((line, match.group(1), markers))
    return blocks


def subsample(data, n):
    """A copy of a dataset Bunch with the first ``n`` rows of each ``X_/y_/A_`` train/test."""
    from sklearn.utils import Bunch

    small = Bunch(**data)
    for key, value in data.items():
        if key.split("_")[0] in ("X", "y", "A") and key.endswith(("_train", "_test")):
            small[key] = value.iloc[:n] if hasattr(value, "iloc") else value[:n]
    return small


def apply_markers(code: str, markers: list[str], where: str) -> tuple[str, list[str]]:
    """The block's code after the substitutions, and the modules it requires."""
    required = []
    for marker in markers:
        if marker.startswith("requires "):
            required += marker.split()[1:]
            continue
        old, sep, new = marker.partition(" -> ")
        assert sep, f"{where}: a marker is 'OLD -> NEW' or 'requires MODULE'; got {marker!r}"
        assert old in code, f"{where}: stale marker, {old!r} is not in the block"
        code = code.replace(old, new)
    return code, required


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def test_marker_parsing():
    text = ("x\n<!-- test: a=10 -> a=1 -->\n\n```python\nf(a=10)\n```\n"
            "```python\ng()\n```\n")
    blocks = python_blocks(text)
    assert [(line, markers) for line, _, markers in blocks] == [(4, ["a=10 -> a=1"]), (7, [])]
    assert apply_markers(blocks[0][1], blocks[0][2], "t") == ("f(a=1)\n", [])
    with pytest.raises(AssertionError, match="stale marker"):
        apply_markers("f()\n", ["a=10 -> a=1"], "t")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_python_blocks_run_in_order(page, tmp_path, monkeypatch):
    import matplotlib
    import sklearn
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = python_blocks(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{page.name} has no python blocks")
    monkeypatch.chdir(tmp_path)  # blocks may write figures and results
    namespace: dict = {"__name__": "__docs__", "subsample": subsample}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CLI's policy; 2 threads on a busy 2-core machine: 3-50x slower
    start = time.perf_counter()
    try:
        with sklearn.config_context():  # a block may enable metadata routing
            for line, code, markers in blocks:
                where = f"{page.name}:{line}"
                code, required = apply_markers(code, markers, where)
                missing = [m for m in required if not _importable(m)]
                if missing:
                    pytest.skip(f"{where} and later blocks need {', '.join(missing)}")
                try:
                    exec(compile(code, where, "exec"), namespace)
                except Exception as exc:
                    raise AssertionError(
                        f"the python block at {where} fails: {type(exc).__name__}: {exc}"
                    ) from exc
    finally:
        torch.set_num_threads(threads)
        plt.close("all")
    assert time.perf_counter() - start < 60, f"{page.name}'s blocks are too slow for the suite"


@pytest.mark.parametrize("path", DOCTEST_MODULES)
def test_docstring_examples_run(path):
    """The Examples of every docstring in the module pass as doctests (``+SKIP`` only where the
    docstring says why the example cannot run here, e.g. data that is not bundled)."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as for the pages above: examples are tiny, threads only contend
    start = time.perf_counter()
    try:
        for test in doctest.DocTestFinder().find(module):
            runner.run(test, out=report.append)
    finally:
        torch.set_num_threads(threads)
        plt.close("all")
    assert runner.failures == 0, "".join(report)
    assert time.perf_counter() - start < 30, f"{path}'s examples are too slow for the suite"
