"""Every DVC stage lists the code it runs (dvc.yaml), derived here from what it runs; every run
table has its plots.

A stage's command names a Snakemake target (after marking its upstream stage's target done with
--touch); a dry run of both (the real workflow, the default config, as `dvc repro` runs it)
gives the jobs the stage runs and their shell commands. Each `icsa …` command is mapped to the
module handling it by the CLI's own parser, and the modules it can import within icsa/ are
followed through the source (ast: every import statement, also inside functions; lazy
re-exports; "package.module:Name" registry strings). With the workflow files of its rules, the
Snakefile, common.smk (and what they import) and the config schema, that is the code whose
change must make `dvc repro` run the stage. A path missing from the stage's `deps` fails here by
name. A code dep that nothing the stage runs reads fails too: it is stale (a listed directory
need only hold some of the code, since Snakemake, not DVC, decides which jobs rerun).
"""

from __future__ import annotations

import ast
import re
import shlex
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.helpers.workflow import ROOT, scratch_workdir, snakemake

ICSA = ROOT / "icsa"
ALWAYS = ["workflow/Snakefile", "workflow/rules/common.smk", "workflow/schemas/config.schema.yaml"]
TRAIN = ["train", "--spec", "{}", "--root", "data", "--run-dir", "run"]


def module_file(name: str) -> Path | None:
    """The source of module `name` (icsa.x.y) if it is one within icsa/."""
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _strings(tree: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


@cache
def lazy_exports(init: Path) -> tuple[frozenset[str], frozenset[str]]:
    """A package __init__'s names defined at its top level, and the module names its strings
    hold (icsa/lazy.py: what it re-exports on first access)."""
    tree = ast.parse(init.read_text())
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(defined), frozenset(_strings(tree))


@cache
def imported_modules(path: Path) -> frozenset[str]:
    """icsa modules `path` can import: its import statements (also those inside functions,
    which run when the command calls them), a lazily re-exported name's module, and the module
    names its strings hold ("package.module:Name" registry entries) outside a package's
    __init__ (whose strings are its lazy re-exports, followed only for the names imported).
    Of a workflow file (Snakefile, .smk), its icsa import lines."""
    text = path.read_text()
    if path.suffix != ".py":
        text = "\n".join(re.findall(r"^(?:from|import) icsa\b.*$", text, re.M))
    tree = ast.parse(text)
    names = set() if path.name == "__init__.py" else {s.partition(":")[0] for s in _strings(tree)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                init = module_file(node.module)
                if module_file(full):
                    names.add(full)
                elif init and init.name == "__init__.py":
                    defined, lazy = lazy_exports(init)
                    names |= set() if alias.name in defined else set(lazy)
    return frozenset(n for n in names if n.split(".")[0] == "icsa" and module_file(n))


def import_closure(start: set[Path]) -> set[Path]:
    """Every file within icsa/ that importing `start` can load, with the package __init__
    files on the way."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        parents = path.relative_to(ROOT).parent.parts if path.suffix == ".py" else ()
        for depth in range(1, len(parents) + 1):
            init = ROOT.joinpath(*parents[:depth], "__init__.py")
            if init.is_file():
                todo.append(init)
        todo += [module_file(name) for name in imported_modules(path)]
    return seen


@cache
def cli_parser():
    from icsa.cli import build_parser

    return build_parser()


def command_code(tokens: list[str]) -> set[Path]:
    """Files within icsa/ an `icsa …` command line (without the leading `icsa`) can load: the
    module of the command's handler and the CLI's entry point, with what they import. (The
    parser also imports the other subcommands' modules, which only add their own flags.)"""
    args = cli_parser().parse_args(tokens)
    return import_closure({module_file(args.func.__module__), ICSA / "cli" / "__init__.py"})


def rule_files() -> dict[str, str]:
    """Rule name → the workflow file that defines it."""
    files = {}
    for path in [ROOT / "workflow" / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")]:
        for name in re.findall(r"^\s*(?:rule|checkpoint) (\w+):", path.read_text(), re.M):
            files[name] = str(path.relative_to(ROOT))
    return files


@cache  # one dry run per target (each table stage's upstream is `evaluations`)
def planned_jobs(workdir: Path, target: str) -> tuple[tuple[str, str], ...]:
    """(rule, shell command) of each job `snakemake <target>` would run from scratch."""
    result = snakemake(workdir, "-n", "-p", "--cores", "2", target, config="")
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = []
    for block in re.split(r"\n(?=\[)", result.stdout):
        if rule := re.search(r"^(?:local)?rule (\w+):", block, re.M):
            command = re.search(r"^Shell command: (.*)$", block, re.M)
            jobs.append((rule[1], command[1] if command else ""))
    return tuple(jobs)


def stage_code(workdir: Path, target: str, upstream: str | None) -> set[str]:
    """Code paths (relative to the repository) of the jobs a stage runs: those of its target
    that its upstream stage's target (which it first marks done with --touch) does not run."""
    done = {rule for rule, _ in planned_jobs(workdir, upstream)} if upstream else set()
    jobs = [(rule, cmd) for rule, cmd in planned_jobs(workdir, target) if rule not in done]
    assert jobs, f"snakemake {target} runs nothing beyond {upstream}"
    code = set(ALWAYS) | {rule_files()[rule] for rule, _ in jobs}
    # The workflow's own imports run in Snakemake when the stage runs (parse time: the plan,
    # each job's params).
    closure = import_closure({ROOT / path for path in code if path.startswith("workflow/")})
    code |= {str(p.relative_to(ROOT)) for p in closure}
    for _, command in jobs:
        tokens = shlex.split(command.split(" > ")[0])
        while "icsa" in tokens:  # `icsa gpu run … -- icsa train …`: both
            tokens = tokens[tokens.index("icsa") + 1 :]
            inner = tokens.index("--") if "--" in tokens else len(tokens)
            code |= {str(p.relative_to(ROOT)) for p in command_code(tokens[:inner])}
            tokens = tokens[inner:]
    return code


def stages() -> dict[str, dict]:
    """dvc.yaml's stages with `foreach` expanded over config `tables` (as DVC does)."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    out = {}
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:
            for key in config["tables"]:
                text = yaml.safe_dump(stage["do"]).replace("${key}", key)
                out[f"{name}@{key}"] = yaml.safe_load(text)
        else:
            out[name] = stage
    return out


def targets(stage: dict) -> tuple[str, str | None]:
    """The Snakemake target of the stage's command, and the one it first marks done (--touch)."""
    commands = stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]
    runs = [shlex.split(c) for c in commands]
    assert all(run[0] == "snakemake" for run in runs), commands
    touched = [run[-1] for run in runs if "--touch" in run]
    (target,) = [run[-1] for run in runs if "--touch" not in run]
    return target, (touched[0] if touched else None)


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return scratch_workdir(tmp_path_factory.mktemp("dvcdeps"))


@pytest.mark.parametrize("name", sorted(stages()))
def test_each_stage_lists_the_code_it_runs(workdir, name):
    stage = stages()[name]
    deps = [d for d in stage["deps"] if isinstance(d, str)]
    code = stage_code(workdir, *targets(stage))
    missing = sorted(p for p in code if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {name}: deps miss {missing}"
    unused = [d for d in deps if d.split("/")[0] in ("icsa", "workflow")
              and not any(covered(p, [d]) for p in code)]  # fmt: skip
    assert not unused, f"dvc.yaml stage {name}: deps {unused} hold no code the stage runs"


def test_the_closure_follows_lazy_imports_and_registry_strings():
    """`icsa train` reaches the attention modules only through registry strings and lazy
    re-exports: they must be found (a closure that missed them would pass any dvc.yaml)."""
    code = {str(p.relative_to(ROOT)) for p in command_code(TRAIN)}
    assert {"icsa/spec.py", "icsa/registry.py", "icsa/train/run.py"} <= code
    assert any(p.startswith("icsa/models/") for p in code)
    assert any(p.startswith("icsa/data/") for p in code)
    assert not any(p.startswith("icsa/tables/") for p in code)


def test_every_run_table_has_its_plots():
    """`dvc plots show` draws Recall@N and the training curves of every run table in config
    (the top-level `plots:` of dvc.yaml cannot loop over `tables`, so this keeps them complete)."""
    from icsa import pipeline

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    drawn = {
        (title, file) for entry in plots for title, plot in entry.items() for file in plot["y"]
    }
    expected = set()
    for table in pipeline.run_tables(config):
        number = table.removeprefix("table")
        expected.add((f"Recall@N per row (Table {number})", f"results/{table}_recall.csv"))
        expected.add((f"Training curves (Table {number} runs)", f"results/{table}_curves.csv"))
    assert drawn == expected
