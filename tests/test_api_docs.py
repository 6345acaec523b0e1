"""docs/api.md against the code: every signature it prints is the real one, and every public
name has one there; the docs name only modules, objects, scripts and flags that exist.

A *signature* on api.md is a code span ``name(params)`` (optionally followed by ``-> ...``),
e.g. ``FairConstrainedNet(module, *, dual_lr="auto", ...)``. It must list every parameter of
``inspect.signature`` in order, with ``*`` where the keyword-only ones start and each default as
written in the source (compared as Python expressions: ``"auto"`` and ``'auto'`` are the same,
``0.05`` and ``"auto"`` are not); ``**kwargs`` may be shown under any name, or left out. A bare
name is looked up first on the class of the enclosing heading (methods), then in the module of
the enclosing ``##`` heading, then from ``fairprune_sk``.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import importlib
import inspect
import io
import re
import shlex
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

#: Packages whose public names (``__all__``) must each have a signature on api.md: every class
#: and function except exceptions and skorch callbacks (listed by name only).
DOCUMENTED_PACKAGES = (
    "fairprune_sk",
    "fairprune_sk.nets",
    "fairprune_sk.constrained",
    "fairprune_sk.metrics",
    "fairprune_sk.pruning",
    "fairprune_sk.quantization",
    "fairprune_sk.diagnostics",
    "fairprune_sk.datasets",
    "fairprune_sk.models",
    "fairprune_sk.audit",
)
#: Methods that must have a signature on api.md besides the public functions and classes.
DOCUMENTED_METHODS = (
    "fairprune_sk.PrunableNetClassifier.fit",
    "fairprune_sk.PrunableNetClassifier.partial_fit",
    "fairprune_sk.PrunableNetClassifier.fine_tune",
    "fairprune_sk.PrunableNetClassifier.prune",
    "fairprune_sk.PrunableNetClassifier.pruned_copy",
    "fairprune_sk.PrunableNetClassifier.quantize",
    "fairprune_sk.PrunableNetClassifier.quantized_copy",
    "fairprune_sk.PrunableNetClassifier.dense_reference",
    "fairprune_sk.PrunableNetClassifier.compact",
    "fairprune_sk.FairConstrainedNet.fit",
    "fairprune_sk.FairConstrainedNet.partial_fit",
    "fairprune_sk.FairConstrainedNet.fine_tune",
    "fairprune_sk.FairConstrainedNet.pruned_copy",
    "fairprune_sk.ExcessRiskFrame.from_outputs",
    "fairprune_sk.ExcessRiskFrame.difference",
    "fairprune_sk.ExcessRiskFrame.separated_pairs",
    "fairprune_sk.ExcessRiskFrame.plot",
    "fairprune_sk.GroupDiagnostics.correlations",
    "fairprune_sk.GroupDiagnostics.plot",
)
#: Code spans of the form ``f(...)`` on api.md that are formulas or other libraries' calls.
NOT_OURS = {"max", "clip", "J", "help", "sklearn", "torch", "np", "copy"}

SPAN = re.compile(r"`([^`\n]+)`")
SIGNATURE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\((?P<params>.*)\)(?:\s*->\s*.+)?$", re.DOTALL)
CONSTANT = re.compile(r"^(?P<name>(?:\w+\.)*[A-Z][A-Z0-9_]*) = (?P<value>.+)$", re.DOTALL)
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
DOTTED = re.compile(r"\bfairprune_sk(?:\.[A-Za-z_]\w*)+")
LINK = re.compile(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)")
SCRIPT = re.compile(r"\b((?:benchmarks|examples|tests)/[\w/]+\.py)\b")
#: A constant default, for the test of the default comparison.
FORMULA_NAMES = ("J", "max")
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


# ----------------------------------------------------------------------------------------------
# reading api.md
# ----------------------------------------------------------------------------------------------
def split_params(text: str) -> list[str]:
    """The top-level comma-separated items of a parameter list (brackets and quotes kept)."""
    items, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        items.append("".join(current).strip())
    return items


def resolve(name: str, module: Any, owner: Any) -> Any:
    """The object a documented name stands for, or None."""
    first, *rest = name.split(".")
    if first == "fairprune_sk":
        return resolve_dotted(name)
    scopes = [module, importlib.import_module("fairprune_sk")]
    if owner is not None:  # the class, then the module defining it
        scopes[:0] = [owner, importlib.import_module(owner.__module__)]
    candidates = [getattr(scope, first) for scope in scopes if hasattr(scope, first)]
    for obj in candidates:
        try:
            for part in rest:
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    return None


def resolve_dotted(path: str) -> Any:
    """``fairprune_sk.a.b.C.d`` as an object: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


Entry = tuple[int, str, Any, str]


def api_entries(text: str) -> tuple[list[Entry], list[Entry]]:
    """``(line, name, object, params)`` of every signature span of api.md, and
    ``(line, name, object, value)`` of every ``NAME = value`` span, with their contexts resolved
    (an unresolved name has object None)."""
    module: Any = importlib.import_module("fairprune_sk")
    owner: Any = None
    signatures, constants = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        heading = HEADING.match(line)
        if heading:
            owner = None
            first = SPAN.search(heading.group(2))
            if first:
                span = first.group(1)
                if DOTTED.fullmatch(span) and inspect.ismodule(resolve_dotted(span)):
                    module = resolve_dotted(span)
                else:
                    match = SIGNATURE.match(span)
                    obj = match and resolve(match.group("name"), module, None)
                    owner = obj if inspect.isclass(obj) else None
        for span in SPAN.findall(line):
            match = SIGNATURE.match(span)
            if match and match.group("name").split(".")[0] not in NOT_OURS:
                obj = resolve(match.group("name"), module, owner)
                signatures.append((number, match.group("name"), obj, match.group("params")))
                continue
            match = CONSTANT.match(span)
            if match:
                obj = resolve(match.group("name"), module, owner)
                constants.append((number, match.group("name"), obj, match.group("value")))
    return signatures, constants


# ----------------------------------------------------------------------------------------------
# reading the code
# ----------------------------------------------------------------------------------------------
def _function(obj: Any) -> Any:
    """The plain function behind a class (its ``__init__``), method or decorated function."""
    if inspect.isclass(obj):
        obj = obj.__init__
    return inspect.unwrap(getattr(obj, "__func__", obj))


def default_sources(obj: Any) -> dict[str, ast.expr]:
    """Each parameter's default as the expression written in the source."""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        return {node.target.id: node.value for node in body
                if isinstance(node, ast.AnnAssign) and node.value is not None
                and isinstance(node.target, ast.Name)}
    function = _function(obj)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    node = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    with_default = positional[len(positional) - len(args.defaults):]
    sources = {a.arg: d for a, d in zip(with_default, args.defaults, strict=True)}
    sources.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                    if d is not None})
    return sources


def expected_params(obj: Any) -> list[tuple[str, str, Any]]:
    """``(marker, name, default)`` per parameter: marker ``""``, ``"*"`` (the keyword-only
    separator), ``"*args"`` or ``"**"``; ``self`` / ``cls`` left out."""
    signature = inspect.signature(obj)
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls") and not inspect.isclass(obj):
        params = params[1:]
    out: list[tuple[str, str, Any]] = []
    starred = False
    for param in params:
        if param.kind is param.VAR_POSITIONAL:
            out.append(("*args", param.name, param.empty))
            starred = True
        elif param.kind is param.VAR_KEYWORD:
            out.append(("**", param.name, param.empty))
        else:
            if param.kind is param.KEYWORD_ONLY and not starred:
                out.append(("*", "*", param.empty))
                starred = True
            out.append(("", param.name, param.default))
    return out


def same_expression(written: str, source: ast.expr | None, value: Any) -> bool:
    """Whether the documented default is the source's expression; where the source names a
    constant (``methods=DEFAULT_METHODS``) or is not available, the documented literal may
    give its value instead."""
    try:
        documented = ast.parse(written, mode="eval").body
    except SyntaxError:
        return False
    if source is not None and ast.dump(documented) == ast.dump(source):
        return True
    if source is None or isinstance(source, (ast.Name, ast.Attribute)):
        try:
            return ast.literal_eval(documented) == value
        except ValueError:
            return False
    return False


def check_signature(name: str, obj: Any, params: str) -> list[str]:
    """What differs between a documented parameter list and the code's (empty when equal)."""
    documented = split_params(params)
    expected = expected_params(obj)
    try:
        sources = default_sources(obj)
    except (OSError, TypeError, StopIteration):
        sources = {}
    problems = []
    shown = [item for item in documented if not item.startswith("**")]
    wanted = [(marker, pname, default) for marker, pname, default in expected if marker != "**"]
    if any(item.startswith("**") for item in documented) and not any(
        marker == "**" for marker, _, _ in expected
    ):
        problems.append(f"{name} takes no **kwargs")
    written_names = [item.split("=")[0].strip() for item in shown]
    code_names = [("*" + pname if marker == "*args" else pname) for marker, pname, _ in wanted]
    if written_names != code_names:
        missing = [n for n in code_names if n not in written_names]
        unknown = [n for n in written_names if n not in code_names]
        problems.append(f"{name}: documented ({', '.join(written_names)}), code "
                        f"({', '.join(code_names)}); missing {missing}, unknown {unknown}")
        return problems
    for item, (marker, pname, default) in zip(shown, wanted, strict=True):
        if marker:
            continue
        has_default = default is not inspect.Parameter.empty
        _, sep, written = item.partition("=")
        if has_default and not sep:
            problems.append(f"{name}: {pname} has a default, {pname}={default!r}")
        elif sep and not has_default:
            problems.append(f"{name}: {pname} has no default; documented {item}")
        elif sep and not same_expression(written.strip(), sources.get(pname), default):
            source = sources.get(pname)
            shown_default = ast.unparse(source) if source is not None else repr(default)
            problems.append(f"{name}: {pname}={written.strip()} documented, the code's default "
                            f"is {pname}={shown_default}")
    return problems


def public_objects() -> dict[str, Any]:
    """Every class and function in ``__all__`` of :data:`DOCUMENTED_PACKAGES`, by dotted name."""
    from skorch.callbacks import Callback

    objects = {}
    for package in DOCUMENTED_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if inspect.isclass(obj) and issubclass(obj, (BaseException, Callback)):
                continue
            objects[f"{package}.{name}"] = obj
    for path in DOCUMENTED_METHODS:
        objects[path] = resolve_dotted(path)
    return objects


@functools.cache
def cli_options(subcommand: str) -> frozenset[str] | None:
    """The ``--flags`` that ``fairprune <subcommand> --help`` lists (None: no such
    subcommand)."""
    from fairprune_sk.cli import build_parser

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args([subcommand, "--help"])
        except SystemExit as exit_:
            if exit_.code != 0:
                return None
    return frozenset(re.findall(r"--[a-z][\w-]*", out.getvalue()))


def _identity(obj: Any) -> Any:
    return getattr(obj, "__func__", obj)


# ----------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------
def test_split_params():
    assert split_params('a, b=(1, 2), *, c="x, y", **kw') == ["a", "b=(1, 2)", "*", 'c="x, y"',
                                                            "**kw"]


def test_check_signature_catches_wrong_defaults_and_names():
    def f(a, b=0.05, *, c="auto", **kwargs):
        """A toy function."""

    assert check_signature("f", f, 'a, b=0.05, *, c="auto", **params') == []
    assert check_signature("f", f, "a, b=0.05, *, c='auto'") == []
    assert check_signature("f", f, 'a, b="auto", *, c="auto"') == [
        'f: b="auto" documented, the code\'s default is b=0.05'
    ]
    assert "unknown ['d']" in check_signature("f", f, 'a, b=0.05, *, c="auto", d=1')[0]
    assert "missing ['*']" in check_signature("f", f, 'a, b=0.05, c="auto"')[0]
    assert check_signature("f", f, "a, b=0.05") == [
        "f: documented (a, b), code (a, b, *, c); missing ['*', 'c'], unknown []"
    ]

    def g(methods=FORMULA_NAMES, *, rate=0.5):
        """A constant as a default: the documented value is compared with it."""

    assert check_signature("g", g, f"methods={sorted(FORMULA_NAMES)!r}, *, rate=0.5") == [
        f"g: methods={sorted(FORMULA_NAMES)!r} documented, the code's default is "
        "methods=FORMULA_NAMES"
    ]
    assert check_signature("g", g, f"methods={FORMULA_NAMES!r}, *, rate=0.5") == []


def test_api_signatures_match_the_code():
    signatures, _ = api_entries(API.read_text(encoding="utf-8"))
    problems = []
    for line, name, obj, params in signatures:
        if obj is None or not callable(obj):
            problems.append(f"api.md:{line}: {name} is not a public callable of the package")
            continue
        problems += [f"api.md:{line}: {p}" for p in check_signature(name, obj, params)]
    assert not problems, "\n".join(problems)


def test_api_documents_every_public_callable():
    signatures, _ = api_entries(API.read_text(encoding="utf-8"))
    documented = {id(_identity(obj)) for _, _, obj, _ in signatures if obj is not None}
    missing = [path for path, obj in public_objects().items()
               if id(_identity(obj)) not in documented]
    assert not missing, f"api.md has no signature for {', '.join(missing)}"


def test_api_constants_match_the_code():
    _, constants = api_entries(API.read_text(encoding="utf-8"))
    assert constants, "api.md shows no constants (NAME = value)"
    for line, name, obj, value in constants:
        assert obj is not None, f"api.md:{line}: {name} does not exist"
        assert ast.literal_eval(value) == obj, f"api.md:{line}: {name} is {obj!r}"


def test_api_target_defaults_table():
    """The table of what ``"auto"`` resolves to, per ``constraint_target``."""
    from fairprune_sk.constrained import TARGET_DEFAULTS

    lines = [line.strip() for line in API.read_text(encoding="utf-8").splitlines()]
    start = lines.index(next(line for line in lines if line.startswith("| `constraint_target`")))
    columns = [cell.strip().strip("`") for cell in lines[start].strip("|").split("|")][1:]
    table = {}
    for row in lines[start + 2:]:
        if not row.startswith("|"):
            break
        cells = [cell.strip().strip("`") for cell in row.strip("|").split("|")]
        table[cells[0]] = dict(zip(columns, map(ast.literal_eval, cells[1:]), strict=True))
    assert table == TARGET_DEFAULTS


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_docs_name_only_what_exists(page):
    """Dotted ``fairprune_sk.*`` names resolve, and the scripts and tests named exist."""
    text = page.read_text(encoding="utf-8")
    missing = sorted({name.rstrip(".") for name in DOTTED.findall(text)
                      if resolve_dotted(name.rstrip(".")) is None})
    assert not missing, f"{page.name} names what does not exist: {', '.join(missing)}"
    scripts = sorted({path for path in SCRIPT.findall(text) if not (ROOT / path).exists()})
    assert not scripts, f"{page.name} names missing files: {', '.join(scripts)}"
    broken = []
    for target, anchor in LINK.findall(text):
        linked = page if not target else page.parent / target
        if not linked.exists():
            broken.append(f"{target}#{anchor}")
        elif anchor and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{page.name} links to what does not exist: {', '.join(broken)}"


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to
    hyphens."""
    return {re.sub(r"[^\w\- ]", "", match.group(2).strip().lower()).replace(" ", "-")
            for match in map(HEADING.match, text.splitlines()) if match}


def _commands(text: str) -> list[str]:
    """Every ``fairprune ...`` command of the page: lines of bash blocks (continuations joined)
    and inline code spans."""
    commands = []
    for language, body in FENCE.findall(text):
        if language not in ("bash", "sh", "console", ""):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("fairprune "):
                commands.append(line)
    commands += [span for span in SPAN.findall(text) if span.startswith("fairprune ")]
    return commands


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_docs_cli_flags_exist(page):
    """Every ``--flag`` of a ``fairprune <subcommand>`` shown on the page is one of its options."""
    problems = []
    for command in _commands(page.read_text(encoding="utf-8")):
        words = shlex.split(command.replace("[", " ").replace("]", " ").replace("|", " "))
        options = cli_options(words[1]) if len(words) > 1 else None
        if options is None:
            problems.append(f"{command!r}: no subcommand {words[1:2]}")
            continue
        problems += [f"{command!r}: fairprune {words[1]} has no {word}"
                     for word in words[2:] if word.startswith("--") and word not in options]
    assert not problems, "\n".join(problems)


def _script_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(script, words)`` of every ``python benchmarks|examples/....py ...`` command of the
    page's shell blocks (continuations joined) and code spans."""
    lines = []
    for language, body in FENCE.findall(text):
        if language in ("bash", "sh", "console", ""):
            lines += [line.split("#")[0] for line in body.replace("\\\n", " ").splitlines()]
    lines += SPAN.findall(text)
    commands = []
    for line in lines:
        words = shlex.split(line.replace("[", " ").replace("]", " "), posix=True)
        if len(words) > 1 and words[0] == "python" and SCRIPT.fullmatch(words[1]):
            commands.append((words[1], words[2:]))
    return commands


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_docs_script_flags_exist(page):
    """Every ``--flag`` of a ``python benchmarks/<script>.py`` command is one the script
    defines (a ``"--flag"`` literal in its source)."""
    problems = []
    for script, words in _script_commands(page.read_text(encoding="utf-8")):
        path = ROOT / script
        if not path.exists():
            problems.append(f"{script} does not exist")
            continue
        source = path.read_text(encoding="utf-8")
        problems += [f"{script} has no {word}" for word in words
                     if word.startswith("--") and f'"{word}"' not in source]
    assert not problems, "\n".join(problems)
