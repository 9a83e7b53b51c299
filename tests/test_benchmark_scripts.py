"""Every benchmark script still runs against the current package: each name it imports from
`icsa` exists (also imports inside functions, which `--help` never reaches), and each script
loads and answers `--help`. No benchmark is run; their results are in benchmarks/results/."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.doc_commands import problem

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))

# One process loads every script (torch imported once) and calls its main() with --help; a
# script's own environment settings (threads, sys.path) stay out of the test process.
DRIVER = """
import contextlib, io, json, runpy, sys, traceback
out = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    buf = io.StringIO()
    try:
        names = runpy.run_path(path, run_name="__benchmark_check__")
        with contextlib.redirect_stdout(buf):
            names["main"]()
        out[path] = "main() returned without printing help"
    except SystemExit as stop:
        out[path] = "ok" if stop.code in (0, None) and "usage:" in buf.getvalue() else (
            f"exit {stop.code}: {buf.getvalue()[-300:]}")
    except BaseException:
        out[path] = traceback.format_exc(limit=3)
print(json.dumps(out))
"""


def _icsa_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of every `from icsa… import name` and `import icsa…` in a file."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "icsa":
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.startswith("icsa")]
    return found


def test_there_are_benchmark_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 10 and (ROOT / "benchmarks" / "bench_geometry.py") in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_icsa_name_a_benchmark_imports_exists(script: Path) -> None:
    missing = []
    for line, module_name, name in _icsa_imports(script):
        module = importlib.import_module(module_name)
        if name is not None and not hasattr(module, name):
            try:  # a submodule imported by name
                importlib.import_module(f"{module_name}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{script.name}:{line}: {module_name}.{name}")
    assert not missing, f"benchmark scripts import names icsa does not have: {missing}"


def test_the_import_check_finds_a_missing_name(tmp_path: Path) -> None:
    script = tmp_path / "stale.py"
    script.write_text("def main():\n    from icsa.data import positives_within, no_such_name\n")
    assert (2, "icsa.data", "no_such_name") in _icsa_imports(script)
    assert not hasattr(importlib.import_module("icsa.data"), "no_such_name")


def test_every_benchmark_script_answers_help() -> None:
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, *map(str, SCRIPTS)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    failed = {Path(k).name: v for k, v in answers.items() if v != "ok"}
    assert len(answers) == len(SCRIPTS) and not failed, failed


def test_the_regression_baseline_script_is_valid_bash_calling_real_commands() -> None:
    script = ROOT / "benchmarks" / "regression_baseline.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    calls = [
        "icsa regression run --work W --out O",
        "icsa regression baseline --reference R --others A B --command C --out O",
    ]
    for call in calls:
        assert call.split(" --")[0] in text
        assert problem(call) is None, call
