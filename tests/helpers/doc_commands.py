"""The commands the documentation shows, and whether each is real (tests/test_docs_commands.py).

Commands come from the fenced shell blocks of README.md, docs/*.md and config/README.md, and
from inline code spans that start with `icsa`, `snakemake`, `make` or `dvc`. Each is checked
against the real thing: `icsa` against the argparse parser of `icsa.cli` (a whole command from a
shell block must parse; an inline fragment must name a real subcommand and only its flags),
`snakemake` and `dvc` against their own parsers, `make` against the Makefile's targets, and
scripts, test files and pip extras against the repository. `<...>`, `...` and `…` are
placeholders: what follows them is not checked.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = ("README.md", "config/README.md", *sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")
))  # fmt: skip
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`((?:icsa|snakemake|make|dvc) [^`]+)`(?!`)")
PLACEHOLDER = re.compile(r"^(\.\.\.|…)$|<[^>]*>")


def documented_commands() -> list[tuple[str, str, bool]]:
    """(where, command, whole): every documented command; `whole` for those of shell blocks."""
    found: list[tuple[str, str, bool]] = []
    for name in DOC_FILES:
        text = (ROOT / name).read_text()
        for block in SHELL_BLOCK.finditer(text):
            line = text.count("\n", 0, block.start()) + 2
            joined = block.group(1).replace("\\\n", " ")
            for offset, command in enumerate(joined.splitlines()):
                for part in split_commands(command):
                    found.append((f"{name}:{line + offset}", part, True))
        for span in INLINE.finditer(text):
            line = text.count("\n", 0, span.start()) + 1
            for part in split_commands(span.group(1).replace("\n", " ")):
                found.append((f"{name}:{line}", part, False))
    return found


def split_commands(line: str) -> list[str]:
    """The simple commands of one shell line: comments dropped, split at `&&`, `||`, `;`, `|`."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split, lexer.commenters = True, "#"
    commands, current = [], []
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [shlex.join(c) for c in commands if c]


def problem(command: str, whole: bool = True) -> str | None:
    """Why ``command`` is not real, or None."""
    words = shlex.split(command)
    while words and (re.match(r"^[A-Z_]+=", words[0]) or words[0] == "sudo"):
        words = words[1:]  # environment assignments, sudo
    if not words:
        return None
    tool = words[0].removeprefix(".venv/bin/")
    checks = {"icsa": _icsa, "snakemake": _snakemake, "make": _make, "dvc": _dvc, "pip": _pip}
    if tool in checks:
        return checks[tool](words[1:], whole)
    if tool in ("python", "python3") and words[1:3] == ["-m", "pytest"]:
        return _pytest(words[3:])
    if tool == "pytest":
        return _pytest(words[1:])
    script = words[1] if len(words) > 1 else ""
    if tool in ("python", "python3", "bash") and script.endswith((".py", ".sh")):
        return _script(script, words[2:])
    if tool.startswith((".ci/", "benchmarks/")):
        return _script(tool, words[1:])
    return None  # another tool (git, cd, ruff, python -m venv, ...): not this project's to check


def _placeholder(word: str) -> bool:
    return bool(PLACEHOLDER.search(word))


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    """argparse's own message when ``args`` do not parse (`--help` parses)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as stop:
        if stop.code not in (0, None):
            lines = err.getvalue().strip().splitlines()
            return lines[-1] if lines else f"exit {stop.code}"
    except Exception as error:  # a value the parser's own type check refuses
        return f"{type(error).__name__}: {error}"
    return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _icsa(args: list[str], whole: bool) -> str | None:
    from icsa.cli import build_parser

    parser, path = build_parser(), ["icsa"]
    rest = list(args)
    while (choices := _subparsers(parser)) and rest and not rest[0].startswith("-"):
        if _placeholder(rest[0]):
            return None  # `icsa <command> --help`
        if rest[0] not in choices:
            return f"{' '.join(path)} has no subcommand {rest[0]!r} (it has {sorted(choices)})"
        path.append(rest.pop(0))
        parser = choices[path[-1]]
    if _subparsers(parser) and "--help" not in rest and "-h" not in rest:
        return f"{' '.join(path)} needs a subcommand ({sorted(_subparsers(parser))})"
    known = parser._option_string_actions
    for word in rest:
        if word == "--" or _placeholder(word):
            break
        if word.startswith("--") and word.split("=")[0] not in known:
            return f"{' '.join(path)} has no flag {word.split('=')[0]} (it has {sorted(known)})"
    if not whole or any(_placeholder(w) for w in args):
        return None
    return _parse(build_parser(), args) or _model_spec(rest)


def _model_spec(args: list[str]) -> str | None:
    """A `--model-spec` given as JSON must be a valid ModelSpec (names, blocks, sizes)."""
    from icsa.errors import InputError
    from icsa.spec import ModelSpec

    for flag, value in zip(args, args[1:]):
        if flag == "--model-spec" and value.startswith("{"):
            try:
                ModelSpec.from_flag(value)
            except InputError as error:
                return str(error)
    return None


def _snakemake(args: list[str], whole: bool) -> str | None:
    from snakemake.cli import get_argument_parser

    return _parse(get_argument_parser(), [a for a in args if not _placeholder(a)])


def snakemake_targets(args: list[str]) -> tuple[list[str], list[str]]:
    """(configfiles, targets) of a documented snakemake command; placeholders dropped."""
    from snakemake.cli import get_argument_parser

    parsed = get_argument_parser().parse_args([a for a in args if not _placeholder(a)])
    return [str(c) for c in parsed.configfile or []], list(parsed.targets or [])


def _dvc(args: list[str], whole: bool) -> str | None:
    from dvc.cli.parser import get_main_parser

    return _parse(get_main_parser(), [a for a in args if not _placeholder(a)])


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


def _make(args: list[str], whole: bool) -> str | None:
    text = (ROOT / "Makefile").read_text()
    for word in args:
        if "=" in word:
            if f"$({word.split('=')[0]})" not in text:
                return f"the Makefile reads no variable {word.split('=')[0]}"
        elif word not in make_targets():
            return f"the Makefile has no target {word!r} (it has {sorted(make_targets())})"
    return None


def _pip(args: list[str], whole: bool) -> str | None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project.get("optional-dependencies", {}))
    for word in args:
        if match := re.fullmatch(r"\.\[([a-z,]+)\]", word):
            unknown = set(match.group(1).split(",")) - extras
            if unknown:
                return f"pyproject.toml has no extra {sorted(unknown)} (it has {sorted(extras)})"
    return None


def _pytest(args: list[str]) -> str | None:
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = {m.split(":")[0] for m in ini.get("markers", [])}
    for i, word in enumerate(args):
        if i and args[i - 1] == "-m" and word not in markers:
            return f"pytest marker {word!r} is not registered (pyproject.toml: {sorted(markers)})"
        if word.startswith("tests/") and not (ROOT / word.split("::")[0]).exists():
            return f"no test file {word}"
    return None


def _script(path: str, args: list[str]) -> str | None:
    file = ROOT / path
    if not file.is_file():
        return f"no script {path}"
    source = file.read_text()
    for word in args:
        if word.startswith("--") and f'"{word.split("=")[0]}"' not in source:
            return f"{path} has no flag {word}"
    return None
