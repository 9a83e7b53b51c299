"""Every command in README.md, docs/*.md and config/README.md is real
(tests/helpers/doc_commands.py): `icsa` commands parse with the real CLI, `make` targets exist,
`snakemake` and `dvc` commands parse with their own parsers, and the Snakemake targets they name
are planned by a dry run of the config they name. Walk-throughs are run by the tests named below."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shlex
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers.doc_commands import (
    ROOT,
    documented_commands,
    problem,
    snakemake_targets,
    split_commands,
)
from tests.helpers.workflow import scratch_workdir, snakemake

COMMANDS = documented_commands()

# Walk-throughs that a test runs for real, step by step (beyond parsing): each step is in the
# docs and, as an argument list, in the test file.
RUN_BY = {
    "tests/test_dvc.py": [
        "dvc repro", "dvc push", "dvc pull", "dvc status -q --with-deps models",
        "snakemake --touch --forceall --cores 1 models",
    ],
    "tests/test_workflow_e2e.py": ["--report results/report.html"],
}  # fmt: skip


def test_the_docs_show_commands_of_every_kind() -> None:
    tools = {shlex.split(c)[0] for _, c, _ in COMMANDS}
    assert {"icsa", "snakemake", "make", "dvc"} <= tools, tools
    assert sum(whole for *_, whole in COMMANDS) >= 20  # shell blocks, not only inline spans


def test_every_documented_command_is_real() -> None:
    wrong = [f"{where}: `{cmd}`: {why}" for where, cmd, whole in COMMANDS
             if (why := problem(cmd, whole))]  # fmt: skip
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "command, why",
    [
        # README's k-means example before issue 28: flags the CLI no longer has.
        ("icsa kmeans --root R --dataset pitts30k --backbone vgg16 --weights none --out x.npz",
         "has no flag --backbone"),
        ("icsa kmeans --root R --dataset pitts30k --out x.npz", "required: --model-spec"),
        ("icsa train --settings '{}'", "has no flag --settings"),
        ("icsa kmeans --model", "has no flag --model"),  # argparse would take it as --model-spec
        ("icsa prepare", "needs a subcommand"),
        ("icsa nosuch --help", "no subcommand 'nosuch'"),
        ("make nosuch", "no target 'nosuch'"),
        ("snakemake --cores 8 --resources gpu=1 results/table5.csv", "ValueError"),
        ("snakemake --no-such-flag", "unrecognized arguments"),
        ("dvc nosuch", "parser error"),
        ("icsa kmeans --root R --dataset d --out o --model-spec '{\"backbone\": \"vgg17\", "
         "\"attention\": \"none\", \"num_clusters\": 8, \"image_size\": [32, 48]}'",
         "vgg17"),
        ("pip install -e '.[nosuch]'", "no extra"),
        ("python -m pytest -m nosuch tests/test_slurm.py", "marker 'nosuch'"),
        ("python benchmarks/gpu_check.py --nosuch", "has no flag --nosuch"),
        ("bash benchmarks/nosuch.sh", "no script"),
    ],
)  # fmt: skip
def test_the_check_refuses_stale_commands(command: str, why: str) -> None:
    found = problem(command)
    assert found is not None and why in found, found


def test_shell_lines_split_into_their_commands() -> None:
    line = "a=1 icsa plan && dvc pull; make run | tee x  # comment; not a command"
    assert split_commands(line) == ["a=1 icsa plan", "dvc pull", "make run", "tee x"]


def test_snakemake_targets_of_the_docs_are_planned(tmp_path: Path) -> None:
    """One dry run per config the docs name, with every target they ask of it."""
    by_config: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for _, command, _ in COMMANDS:
        words = shlex.split(command)
        if words[0] != "snakemake" or {"--report", "--unlock", "--touch"} & set(words):
            continue
        configs, targets = snakemake_targets(words[1:])
        if all((ROOT / c).is_file() for c in configs):
            by_config[tuple(configs)] |= set(targets) or {"all"}
    assert () in by_config and ("config/pittsburgh.yaml",) in by_config, dict(by_config)
    workdir = scratch_workdir(tmp_path)
    for configs, targets in sorted(by_config.items()):
        result = snakemake(workdir, "-n", "--cores", "2", "--", *sorted(targets),
                           config=" ".join(configs), timeout=300)  # fmt: skip
        assert result.returncode == 0 and "Job stats" in result.stdout, (
            f"{configs} {sorted(targets)}:\n{result.stdout[-3000:]}"
        )


@pytest.mark.parametrize("test_file", sorted(RUN_BY))
def test_walk_throughs_are_run_by_their_tests(test_file: str) -> None:
    text = (ROOT / test_file).read_text()
    for step in RUN_BY[test_file]:
        assert any(step in command for _, command, _ in COMMANDS), f"the docs no longer show {step}"
        argv = ", ".join(f'"{word}"' for word in step.split())
        assert argv in text, f"{test_file} no longer runs {step!r} ({argv})"


def _python_blocks() -> list[tuple[str, str]]:
    """README's Python examples (docs/architecture.md's Python blocks list signatures)."""
    text = (ROOT / "README.md").read_text()
    found = re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)
    return [("README.md", m.group(1)) for m in found]


def _call_problems(source: str) -> list[str]:
    """Calls of names imported from `icsa` whose arguments do not bind to the real signature."""
    tree = ast.parse(source)
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "icsa":
            module = importlib.import_module(node.module)
            for alias in node.names:
                imported[alias.asname or alias.name] = getattr(module, alias.name, None)
    problems = [f"icsa has no {name}" for name, obj in imported.items() if obj is None]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            target = imported.get(node.func.id)
            if target is None:
                continue
            args = [None] * len(node.args)
            kwargs = {k.arg: None for k in node.keywords if k.arg}
            try:
                inspect.signature(target).bind(*args, **kwargs)
            except TypeError as error:
                problems.append(f"{node.func.id}(…) at line {node.lineno}: {error}")
    return problems


def test_python_examples_call_the_real_signatures() -> None:
    blocks = _python_blocks()
    assert blocks, "README.md shows the Python API"
    problems = [f"{name}: {p}" for name, source in blocks for p in _call_problems(source)]
    assert not problems, problems
    stale = "from icsa import build_model\nbuild_model('vgg16', 'icsa', clusters=64)\n"
    assert "build_model(…) at line 2" in " ".join(_call_problems(stale))


# `icsa <command> --flag …` as code, docstrings, rules and configs mention it.
MENTION = re.compile(r"\bicsa((?: [a-z][a-z0-9-]*){1,2} --[a-z][^`\"'()\n,;]*)")
MENTION_DIRS = ("icsa", "workflow", "config", "benchmarks", "profiles")


def _mentions() -> list[tuple[str, str]]:
    found = []
    for top in MENTION_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".smk", ".yaml", ".rst", ".sh"):
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                for match in MENTION.finditer(line):
                    command = re.sub(r"[:\\]+(?=\s|$)", "", "icsa" + match.group(1))
                    found.append((f"{path.relative_to(ROOT)}:{number}", command))
    return found


def test_icsa_commands_the_code_and_workflow_mention_are_real() -> None:
    """A docstring, message, rule or config comment that names `icsa <command> --flag` names a
    real flag (a stale `icsa kmeans --attention` in an error message misleads as much as a
    README)."""
    mentions = _mentions()
    assert len(mentions) >= 30 and any("workflow/rules" in w for w, _ in mentions)
    wrong = [f"{where}: `{cmd}`: {why}" for where, cmd in mentions if (why := problem(cmd, False))]
    assert not wrong, "\n".join(wrong)
