"""The results layout is icsa.layout's alone: no path under results/ is spelled elsewhere, and each
Snakemake pattern and the concrete file of a run come from the same function."""

from __future__ import annotations

import io
import re
import string
import tokenize
from pathlib import Path

import pytest

from icsa import layout, registry, spec
from icsa.errors import InputError
from tests.helpers.workflow import ROOT, SNAKEFILE

# ---- (a) no results path spelled outside icsa/layout.py --------------------------------------
# A path rooted at results/ (not benchmarks/results/, the benchmark records), a results folder
# appended to a variable (f"{results}/runs/…"), or one joined onto a Path (`x / "metrics"`).
# Dataset folders keep their own datasets/*.mat (icsa/data/layouts.py): only results' is flagged.
FOLDERS = "runs|metrics|descriptors|centroids|figures|datasets"
PATH_TEXT = [
    re.compile(r"(?<![\w./-])results/"),
    re.compile(rf"\{{(?!LOGS|BENCHMARKS)[^{{}}]*\}}/({FOLDERS})\b"),
    re.compile(rf"(^|/)({FOLDERS.replace('|datasets', '')})/"),
]
JOINED = {"runs", "metrics", "descriptors", "centroids", "figures"}
LAYOUT = Path("icsa/layout.py")


def scanned_files(root: Path) -> list[Path]:
    files = [root / "workflow" / "Snakefile", *sorted((root / "workflow").rglob("*.smk"))]
    files += sorted((root / "icsa").rglob("*.py")) + sorted((root / "benchmarks").glob("*.py"))
    return [f for f in files if f.relative_to(root) != LAYOUT]


def _text(token: str) -> str:
    """The characters of a string literal, without its prefix and quotes."""
    body = token.lstrip("rRbBuUfF")
    quote = body[:3] if body[:3] in ('"""', "'''") else body[0]
    return body[len(quote) : -len(quote)]


def hard_coded_paths(root: Path) -> list[str]:
    """``file:line: literal`` of every string that spells a results path (docstrings and
    comments excepted: they describe the layout, they do not build it)."""
    hits = []
    for path in scanned_files(root):
        tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
        previous = None  # the last significant token
        for token in tokens:
            if token.type in (tokenize.COMMENT, tokenize.NL):
                continue
            if token.type == tokenize.STRING:
                text = _text(token.string)
                statement = previous is None or previous.type in (
                    tokenize.NEWLINE,
                    tokenize.INDENT,
                    tokenize.DEDENT,
                )
                docstring = statement and token.string.lstrip("rRuU")[:3] in ('"""', "'''")
                joined = previous is not None and previous.string == "/" and text in JOINED
                if not docstring and (joined or any(p.search(text) for p in PATH_TEXT)):
                    hits.append(f"{path.relative_to(root)}:{token.start[0]}: {token.string}")
            previous = token
    return hits


def test_no_results_path_is_spelled_outside_the_layout_module():
    hits = hard_coded_paths(ROOT)
    assert not hits, "results paths built outside icsa/layout.py:\n" + "\n".join(hits)


def test_the_scan_finds_each_kind_of_hard_coded_path(tmp_path):
    """The scan is not vacuous: each way of spelling a results path is found, by file:line."""
    (tmp_path / "workflow" / "rules").mkdir(parents=True)
    (tmp_path / "workflow" / "Snakefile").write_text('"""Doc: results/table5.csv."""\n')
    (tmp_path / "workflow" / "rules" / "t.smk").write_text(
        'rule t:\n    output:\n        "results/{table}.csv",\n'
    )
    (tmp_path / "icsa").mkdir()
    (tmp_path / "icsa" / "a.py").write_text(
        '"""results/runs/ in a docstring is fine."""\n'
        "# and results/metrics in a comment\n"
        'x = f"{root}/metrics/{run}"\n'
        'y = root / "runs" / run\n'
        'z = row["runs"]\n'
        'w = f"datasets/{name}.mat"\n'
        'v = "benchmarks/results/gpu.json"\n'
        'u = Path("results/datasets") / name\n'
    )
    (tmp_path / "icsa" / "layout.py").write_text('RESULTS = "results/"\n')
    assert hard_coded_paths(tmp_path) == [
        'workflow/rules/t.smk:3: "results/{table}.csv"',
        'icsa/a.py:3: f"{root}/metrics/{run}"',
        'icsa/a.py:4: "runs"',
        'icsa/a.py:8: "results/datasets"',
    ]


# ---- (b) one function gives the pattern and the file -----------------------------------------
def snakefile_constraints() -> dict[str, str]:
    """The Snakefile's wildcard_constraints: how Snakemake splits a path into wildcards (each value
    is a Python expression over icsa.registry, evaluated as the Snakefile does)."""
    block = SNAKEFILE.read_text().split("wildcard_constraints:", 1)[1].split("\n\n", 1)[0]
    found = re.findall(r"^\s+(\w+)=(.+),$", block, re.M)
    return {name: eval(value, {"registry": registry}) for name, value in found}


def wildcards_of(pattern: str, path: str) -> dict[str, str]:
    """The wildcards Snakemake reads from ``path`` for ``pattern`` (its constraints, else any
    characters but "/"); fails when the path does not match the pattern."""
    constraints, seen, regex = snakefile_constraints(), set(), ""
    for literal, name, _, _ in string.Formatter().parse(pattern):
        regex += re.escape(literal)
        if name is not None:
            group = (
                f"(?P={name})" if name in seen else f"(?P<{name}>{constraints.get(name, '[^/]+')})"
            )
            regex, seen = regex + group, seen | {name}
    match = re.fullmatch(regex, path)
    assert match, f"{path} does not match the pattern {pattern}"
    return match.groupdict()


RUNS = ["pitts30k-vgg16-icsa-b5-s0", "tokyotm-resnet18-none-gem-bnone-s12"]


def path_functions(run: str, evalset: str, dataset: str, table: str) -> dict[str, str]:
    """Every path of icsa.layout, for the given names (wildcard patterns or concrete)."""
    return {
        "index": layout.index_file(dataset),
        "centroids": layout.centroids_file(dataset, "vgg16", "backbone", 3),
        "run_dir": layout.run_dir(run),
        "checkpoint": layout.checkpoint_best(run),
        "history_csv": layout.history_file(run, "csv"),
        "history_json": layout.history_file(run, "json"),
        "dvclive": layout.dvclive_dir(run),
        "state": layout.run_state_dir(run),
        "descriptors_db": layout.descriptors_file(run, evalset, "db"),
        "descriptors_q": layout.descriptors_file(run, evalset, "q"),
        "record": layout.descriptors_record(run, evalset),
        "metrics": layout.metrics_file(run, evalset),
        "perquery": layout.perquery_file(run, evalset),
        "local_stats": layout.local_stats_file(run),
        **{f"table_{o}": layout.table_file(table, o) for o in layout.TABLE_OUTPUTS},
    }


@pytest.mark.parametrize("run", RUNS)
def test_each_pattern_formatted_with_a_runs_wildcards_is_that_runs_file(run):
    parts = spec.parse_run_id(run)
    patterns = path_functions(spec.RUN_ID, "{evalset}", "{dataset}", "{table}")
    files = path_functions(run, "tokyotm-val", parts["dataset"], "table7")
    for name, pattern in patterns.items():
        wildcards = wildcards_of(pattern, files[name])
        assert pattern.format(**wildcards) == files[name], name
        # Snakemake reads the run's own parts from its files, as parse_run_id does.
        for key in ("dataset", "backbone", "attention", "block", "seed"):
            if "{" + key + "}" in pattern and key in wildcards:
                assert wildcards[key] == parts[key], (name, key)
        assert wildcards.get("evalset", "tokyotm-val") == "tokyotm-val"
        assert wildcards.get("table", "table7") == "table7"


@pytest.mark.parametrize("run", RUNS)
def test_parse_run_id_inverts_run_id(run):
    assert spec.run_id(**spec.parse_run_id(run)) == run


def test_the_run_level_paths_of_icsa_spec_are_the_layouts():
    for name in ("run_dir", "checkpoint_best", "metrics_file", "perquery_file", "RESULTS"):
        assert getattr(spec, name) is getattr(layout, name)


def test_a_results_folder_moves_every_path_and_table_results_inverts_table_file(tmp_path):
    assert layout.metrics_file("r", "e-test", tmp_path) == f"{tmp_path}/metrics/r/e-test.json"
    assert layout.efficiency_file(tmp_path) == f"{tmp_path}/efficiency.json"
    for results in ("results", str(tmp_path), "a/b"):
        assert (
            layout.table_results(layout.table_file("table5", "csv", results), "table5") == results
        )
    with pytest.raises(InputError, match="expected a path ending in /table5.csv"):
        layout.table_results("results/table6.csv", "table5")
    with pytest.raises(InputError, match=r"table output 'pdf': expected one of \['csv'"):
        layout.table_file("table5", "pdf")


def test_the_trainer_writes_the_run_folder_the_layout_names(tmp_path):
    """`icsa train --run-dir` writes its files by its own names; they are the layout's."""
    from icsa.train.state import CHECKPOINT_BEST, STATE_DIR

    run_dir = Path(layout.run_dir(RUNS[0], tmp_path))
    assert str(run_dir / CHECKPOINT_BEST) == layout.checkpoint_best(RUNS[0], tmp_path)
    assert str(run_dir / STATE_DIR) == layout.run_state_dir(RUNS[0], tmp_path)
