"""Repository basics a researcher expects: licence, citation, CI, and a described config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _key_paths(data: object, prefix: str = "") -> set[str]:
    """Every key of a nested mapping as a dotted path; `tables.<t>`/`datasets.<name>` collapse."""
    out: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.add(path)
            # Maps whose keys are names (documented as a family) or dataclass fields (below).
            if isinstance(value, dict) and path not in (
                "synthetic.settings",
                "train",
            ):
                out |= _key_paths(value, path)
    return out


def _documented(readme: str, path: str) -> bool:
    """`a.b.c` is described when the README names it in backticks, with generic parts allowed."""
    parts = path.split(".")
    generic = {"datasets": "<name>", "tables": "<t>", "resources": "<step>"}
    if parts[0] in generic and len(parts) > 1:
        if parts[0] == "resources":
            return f"`{parts[1]}`" in readme and (len(parts) < 3 or f"`{parts[2]}`" in readme)
        if parts[0] == "tables" and parts[1] == "table2" and len(parts) > 2:
            return f"`tables.table2.{parts[2]}`" in readme or f"`tables.<t>.{parts[2]}`" in readme
        if len(parts) > 2:
            parts = [parts[0], generic[parts[0]], *parts[2:]]
        elif parts[0] == "tables":
            return "`tables`" in readme  # a table name: `tables.<t>.*` describes its keys
        else:
            return f"`{parts[0]}`" in readme and f"`{parts[1]}`" in readme
    return f"`{'.'.join(parts)}`" in readme


def test_config_readme_describes_every_key() -> None:
    readme = (ROOT / "config" / "README.md").read_text()
    missing = []
    for name in ("config.yaml", "pittsburgh.yaml"):
        data = yaml.safe_load((ROOT / "config" / name).read_text())
        missing += [f"{name}: {p}" for p in sorted(_key_paths(data)) if not _documented(readme, p)]
    from icsa.data.synthetic.settings import CitySettings
    from icsa.train.settings import TrainSettings

    for cls in (CitySettings, TrainSettings):
        for field in dataclasses.fields(cls):
            if not re.search(rf"`{field.name}`", readme):
                missing.append(f"{cls.__name__}.{field.name}")
    assert not missing, f"config/README.md does not describe: {missing}"


def test_license_and_citation() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    import icsa

    assert cff["version"] == icsa.__version__ and cff["license"] == "MIT"
    titles = {ref["title"] for ref in cff["references"]}
    assert "Image Retrieval Based on Independent Attention Mechanism" in titles
    netvlad = next(r for r in cff["references"] if r["title"].startswith("NetVLAD"))
    assert netvlad["year"] == 2016 and netvlad["authors"][0]["family-names"] == "Arandjelović"
    paper = next(r for r in cff["references"] if r["title"].startswith("Image Retrieval"))
    assert [a["family-names"] for a in paper["authors"]] == ["Zhang", "Li", "Zhang", "Wang", "Ding"]


def test_ci_workflow_runs_the_readme_test_command() -> None:
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = [s.get("run", "") for job in ci["jobs"].values() for s in job["steps"]]
    assert any(".ci/run" in s for s in steps)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


# The project stands alone: no file points to a design note or a folder outside the repository.
# (The patterns are assembled so that this file does not match them itself.)
OUTSIDE = re.compile("DES" + "IGN|" + re.escape(".." + "/shared"))
SCANNED = (".py", ".md", ".smk", ".yaml")


def _outside_references(root: Path) -> list[str]:
    """`grep -rn` of OUTSIDE over the scanned file types, skipping .venv, results and .git."""
    hits = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if parts[0] in (".venv", "results", ".git") or path.suffix not in SCANNED:
            continue
        if path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if OUTSIDE.search(line):
                    hits.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return hits


def test_no_file_refers_outside_the_repository(tmp_path: Path) -> None:
    assert not _outside_references(ROOT), _outside_references(ROOT)
    (tmp_path / "a.md").write_text("see " + "DES" + "IGN.md §4\n")
    (tmp_path / "b.py").write_text('"""As in ' + ".." + '/shared/notes."""\n')
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "c.md").write_text("DES" + "IGN\n")
    assert [h.split(":")[0] for h in _outside_references(tmp_path)] == ["a.md", "b.py"]


DOCS = ("README.md", "config/README.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
TOP = ("icsa", "tests", "config", "benchmarks", "workflow", "docs", "profiles", r"\.ci", r"\.dvc")
REPO_PATH = re.compile(rf"^({'|'.join(TOP)})/[\w./-]*$")


def _code_words(text: str) -> list[str]:
    spans = re.findall(r"`([^`\n]+)`", text)
    return [word.strip(",;:()") for span in spans for word in span.split()]


def _exists(word: str) -> bool:
    """Whether a cited repository path (with an optional `::test_name`) or `icsa.…` name exists;
    True for any other word."""
    import importlib

    path, _, test = word.partition("::")
    if REPO_PATH.match(path):
        file = ROOT / path.rstrip("/")
        return file.exists() and (not test or f"def {test}(" in file.read_text())
    if re.fullmatch(r"test_[a-z0-9]+_\w+…?", word):  # a test named alone (`…`: its start)
        return any(re.search(rf"def {re.escape(word.rstrip('…'))}", p.read_text())
                   for p in (ROOT / "tests").rglob("test_*.py"))  # fmt: skip
    if not re.fullmatch(r"icsa(\.\w+)+", word):
        return True
    parts = word.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute, None)
        return found is not None
    return False


def test_every_file_and_icsa_name_the_docs_cite_exists() -> None:
    """A repository path (`icsa/…`, `tests/…::test_name`, …) or a dotted `icsa.…` name in a code
    span of the docs names something that exists."""
    missing = [f"{doc}: {word}" for doc in DOCS
               for word in _code_words((ROOT / doc).read_text()) if not _exists(word)]  # fmt: skip
    assert not missing, f"the docs cite what does not exist: {missing}"
    assert not _exists("icsa.train.settings.TrainSettings.from_json")
    assert not _exists("tests/test_gem.py::test_no_such_test") and not _exists("icsa/nothing.py")
    assert not _exists("test_no_such_test_anywhere") and _exists("test_every_damaged_state_file_…")


SCIENCE_FACTS = (
    "Image Retrieval Based on Independent Attention Mechanism", "NetVLAD", "nnSearchPostprocess",
    "inert", "tests/test_gem.py", "training_effect.md",
)  # fmt: skip


def test_the_science_page_stands_alone_and_the_readme_links_it() -> None:
    science = (ROOT / "docs" / "science.md").read_text()
    assert "docs/science.md" in (ROOT / "README.md").read_text()
    for needed in SCIENCE_FACTS:
        assert needed in science, needed


def test_ruff_lints_every_package_folder() -> None:
    """`ruff check .` (make lint) sees every module of the package: an exclude such as "data"
    matches every folder of that name, and once left icsa/data/ unlinted."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    listed = subprocess.run([ruff, "check", "--show-files", "."], cwd=ROOT, text=True,
                            capture_output=True, check=True).stdout  # fmt: skip
    seen = {Path(line.strip()).resolve() for line in listed.splitlines() if line.strip()}
    modules = {p.resolve() for p in (ROOT / "icsa").rglob("*.py")}
    assert modules <= seen, f"ruff skips {sorted(str(p) for p in modules - seen)[:5]}"
