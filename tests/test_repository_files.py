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
