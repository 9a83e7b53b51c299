"""workflow/envs/icsa.yaml (the rules' software under `snakemake --sdm conda`) says what it is:
pyproject.toml's direct dependencies, each pinned to one version inside pyproject's range, plus
this package itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / "workflow" / "envs" / "icsa.yaml"


def _pip_section() -> list[str]:
    env = yaml.safe_load(ENV.read_text())
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert len(sections) == 1, env["dependencies"]
    return sections[0]


def test_the_env_pins_exactly_pyprojects_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the package itself needs 3.10
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    pip = _pip_section()
    assert pip[-1] == "-e ../.."  # the package itself, from the repository (relative to envs/)
    pinned = {}
    for line in pip[:-1]:
        requirement = Requirement(line)
        (spec,) = requirement.specifier  # one specifier each: ==version
        assert spec.operator == "==", line
        pinned[canonicalize_name(requirement.name)] = spec.version
    assert set(pinned) == set(wanted)
    for name, version in pinned.items():
        assert wanted[name].specifier.contains(version), (name, version, str(wanted[name]))


def test_the_env_says_what_is_pinned():
    text = ENV.read_text()
    python = re.search(r"- python=(\d+\.\d+)", text)
    assert python and python[1] == "3.11"
    assert "pinned to the versions" in text and "Only these are pinned" in text
