"""The workflow through a real SLURM (snakemake-executor-plugin-slurm, profiles/slurm).

Needs a reachable SLURM controller, e.g. the single-node one that `.ci/slurm-up.sh` starts (CI
does this before pytest); skipped with the reason otherwise. Each job really goes through
sbatch/srun on the node; the tests check what SLURM was asked for and that the results equal a
local run's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# This SLURM has no accounting daemon: job states come from squeue, no account is given. Short
# polling intervals keep the test quick; --retries 0 so a failure is not hidden by a retry.
SLURM_ARGS = [
    "--profile", str(PROFILE), "--slurm-status-command", "squeue", "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
    "--latency-wait", "10", "--retries", "0", "--jobs", "4",
]


def slurm_unavailable() -> str | None:
    """Why SLURM cannot be used here, or None when a controller answers with a usable node."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on PATH; run .ci/slurm-up.sh"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True,
                             timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no SLURM controller reachable"
    if out.returncode != 0:
        return f"sinfo cannot reach a SLURM controller: {out.stderr.strip()[:200]}"
    if not re.search(r"^(idle|mix|alloc)", out.stdout, re.MULTILINE):
        return f"no SLURM node is up (states: {out.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = slurm_unavailable()
    if reason:
        pytest.skip(reason)


def run_env() -> dict[str, str]:
    # sbatch --export=ALL: jobs find this venv's python and snakemake through PATH.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([SNAKEMAKE, *args], cwd=workdir, env=run_env(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def slurm_jobs(run_output: str) -> list[dict[str, str]]:
    """The SLURM jobs of one Snakemake run (its run ID is every job's name)."""
    run_id = re.search(r"SLURM run ID: (\S+)", run_output)
    assert run_id, "no SLURM run ID in Snakemake's output: the slurm executor did not run"
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "--name", run_id.group(1), "-o", "%i|%k|%C|%m|%l|%T"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    keys = ("jobid", "comment", "cpus", "mem", "timelimit", "state")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: "sum.json"
    rule numbers:
        output: "numbers.json"
        threads: 1
        resources: mem_mb=200, runtime=5
        shell: "python -c 'import json, os; json.dump({{\\"job\\": os.environ.get(\\"SLURM_JOB_ID\\"), "
               "\\"values\\": [i * i for i in range(100)]}}, open(\\"{output}\\", \\"w\\"))'"
    rule total:
        input: "numbers.json"
        output: "sum.json"
        threads: 2
        resources: mem_mb=300, runtime=7
        shell: "python -c 'import json, os; v = json.load(open(\\"{input}\\"))[\\"values\\"]; "
               "json.dump({{\\"sum\\": sum(v), \\"cpus\\": os.environ.get(\\"SLURM_CPUS_PER_TASK\\")}}, "
               "open(\\"{output}\\", \\"w\\"))'"
    """
)


def test_jobs_run_in_slurm_with_their_declared_resources(slurm, tmp_path):
    """Two rules through `--executor slurm`: each job is a SLURM job sized as the rule says."""
    for name in ("cluster", "local"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Snakefile").write_text(SNAKEFILE)
    result = snakemake(tmp_path / "cluster", *SLURM_ARGS)
    jobs = {job["comment"]: job for job in slurm_jobs(result.stdout + result.stderr)}
    assert set(jobs) == {"rule_numbers", "rule_total"}
    assert all(job["state"] == "COMPLETED" for job in jobs.values()), jobs
    assert (jobs["rule_numbers"]["cpus"], jobs["rule_numbers"]["mem"]) == ("1", "200M")
    assert (jobs["rule_total"]["cpus"], jobs["rule_total"]["mem"]) == ("2", "300M")
    assert jobs["rule_total"]["timelimit"] == "7:00"
    numbers = json.loads((tmp_path / "cluster" / "numbers.json").read_text())
    assert numbers["job"] == jobs["rule_numbers"]["jobid"]  # it ran inside that SLURM job
    cluster = json.loads((tmp_path / "cluster" / "sum.json").read_text())
    assert cluster["cpus"] == "2"
    snakemake(tmp_path / "local", "--cores", "2")
    local = json.loads((tmp_path / "local" / "sum.json").read_text())
    assert cluster["sum"] == local["sum"] == sum(i * i for i in range(100))
