"""The CI regression check has teeth: it passes the code as it is and fails six realistic faults.

`icsa regression run` trains and evaluates config/regression.yaml (four runs, two evaluation
sets, ~25 s on two cores) and `compare` checks every query's first-hit rank and a descriptor
projection against tests/baselines/regression.json: bit for bit in the baseline's environment,
within the drift measured under other kernels elsewhere (icsa/regression.py). Each fault of
tests/helpers/mutants.py is applied to a copy of the package, run in a fresh process, and must
fail the check even with the cross-environment tolerance — what a machine of another kind would
apply — so the check catches it on any machine. Two processes run at a time (two cores).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from icsa.regression import MARGIN, compare
from tests.helpers.mutants import MUTANTS, apply
from tests.helpers.workflow import ROOT

pytestmark = pytest.mark.slow
BASELINE = ROOT / "tests" / "baselines" / "regression.json"


# Load `icsa` from the given folder whatever else is installed (the editable install's import
# hook would otherwise win over PYTHONPATH), then run the CLI.
LOADER = """
import importlib.util, sys
package = sys.argv.pop(1)
spec = importlib.util.spec_from_file_location(
    "icsa", package + "/icsa/__init__.py", submodule_search_locations=[package + "/icsa"])
module = importlib.util.module_from_spec(spec)
sys.modules["icsa"] = module
spec.loader.exec_module(module)
from icsa.cli import main
print("package:", module.__file__, file=sys.stderr)
sys.exit(main(sys.argv[1:]))
"""


def _run(work: Path, package: Path = ROOT) -> dict:
    out = work / "result.json"
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(package), "regression", "run", "--config",
         str(ROOT / "config" / "regression.yaml"), "--work", str(work / "w"), "--out", str(out)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # The mutant, not the installed package, ran.
    assert f"package: {package / 'icsa' / '__init__.py'}" in done.stderr, done.stderr[:500]
    shutil.rmtree(work / "w")  # 0.9 GB of checkpoints and caches per run: keep the result only
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """The clean code and every mutant, two at a time."""
    root = tmp_path_factory.mktemp("regression")

    def one(name: str) -> tuple[str, dict]:
        work = root / name
        work.mkdir()
        if name == "clean":
            return name, _run(work)
        return name, _run(work, apply(name, work / "pkg"))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, ["clean", *MUTANTS]))


def test_the_regression_configuration_moves(runs) -> None:
    results = runs["clean"]["results"]
    recall = {key: value["recalls"] for key, value in results.items()}
    for key, r in recall.items():  # nothing saturated: R@1 and R@5 inside (0, 1)
        assert 0.2 < r["1"] < r["5"] < 0.95, (key, r)

    def changed(run_a: str, run_b: str) -> int:
        a = results[f"{run_a}/pitts30k-test"]["first_hit_rank"]
        b = results[f"{run_b}/pitts30k-test"]["first_hit_rank"]
        return sum(x != y for x, y in zip(a, b))

    # Training conv5 moves most queries' ranks and beats training NetVLAD alone.
    assert recall["none-b5-s0/pitts30k-test"]["1"] > recall["none-bnone-s0/pitts30k-test"]["1"]
    assert changed("none-b5-s0", "none-bnone-s0") > 100
    # ICSA trained with conv5 ends up elsewhere than plain block 5.
    assert changed("icsa-b5-s0", "none-b5-s0") > 10


def test_clean_code_passes_the_check(runs) -> None:
    baseline = json.loads(BASELINE.read_text())
    assert compare(runs["clean"], baseline) == []  # exact here if same environment
    assert compare(runs["clean"], baseline, tolerant=True) == []


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_each_fault_fails_the_check_on_any_machine(runs, mutant: str) -> None:
    baseline = json.loads(BASELINE.read_text())
    problems = compare(runs[mutant], baseline, tolerant=True)
    assert problems, f"{mutant}: the regression check did not notice"


def test_tolerance_is_the_measured_drift_plus_a_margin() -> None:
    tolerance = json.loads(BASELINE.read_text())["tolerance"]
    assert "benchmarks/regression_baseline.sh" in tolerance["command"]
    assert len(tolerance["measured_against"]) >= 2
    for key, measured in tolerance["measured"].items():
        for name, value in measured.items():
            assert tolerance["allowed"][key][name] == pytest.approx(value + MARGIN[name])
