"""The workflow through a real SLURM (snakemake-executor-plugin-slurm, profiles/slurm).

Needs a reachable SLURM controller, e.g. the single-node one that `.ci/slurm-up.sh` starts (CI
does this before pytest); skipped with the reason otherwise. Each job really goes through
sbatch/srun on the node; the test checks what SLURM was asked for and that the results equal a
local run's. It runs the tiny workflow twice (about 2 min on two idle cores), hence also `slow`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.services import unavailable

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# This SLURM has no accounting daemon: job states come from squeue, no account is given. Short
# polling intervals keep the test quick; --retries 0 so a failure is not hidden by a retry.
SLURM_ARGS = [
    "--profile",
    str(PROFILE),
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
    "--latency-wait",
    "10",
    "--retries",
    "0",
    "--jobs",
    "4",
]


def slurm_unavailable() -> str | None:
    """Why SLURM cannot be used here, or None when a controller answers with a usable node."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on PATH; run .ci/slurm-up.sh"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no SLURM controller reachable"
    if out.returncode != 0:
        return f"sinfo cannot reach a SLURM controller: {out.stderr.strip()[:200]}"
    if not re.search(r"^(idle|mix|alloc)", out.stdout, re.MULTILINE):
        return f"no SLURM node is up (states: {out.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        unavailable("SLURM", "the executor plugin is missing: pip install '.[slurm]'")
    reason = slurm_unavailable()
    if reason:
        unavailable("SLURM", reason)


def run_env() -> dict[str, str]:
    # sbatch --export=ALL: jobs find this venv's python and snakemake through PATH.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [SNAKEMAKE, *args],
        cwd=workdir,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def slurm_jobs(run_output: str) -> list[dict[str, str]]:
    """The SLURM jobs of one Snakemake run (its run ID is every job's name)."""
    run_id = re.search(r"SLURM run ID: (\S+)", run_output)
    assert run_id, "no SLURM run ID in Snakemake's output: the slurm executor did not run"
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "--name", run_id.group(1), "-o", "%i|%k|%C|%m|%l|%T"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    keys = ("jobid", "comment", "cpus", "mem", "timelimit", "state")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


RUN = "pitts30k-vgg16-icsa-b5-s0"
TARGET = f"results/metrics/{RUN}/pitts30k-test.json"
# Per-step sizes on top of config/tiny.yaml, to see them reach sbatch. One CPU per job, so that
# the local run (--cores 1) uses the same thread count and gives bit-identical numbers.
EXTRA_CONFIG = "resources:\n  train: {cpus: 1, mem_mb: 1500, runtime: 12}\n"
WORKFLOW_ARGS = [
    "-s",
    str(REPO / "workflow" / "Snakefile"),
    "--configfile",
    str(REPO / "config" / "tiny.yaml"),
    "extra.yaml",
    "--",
    TARGET,
]


def without_timings(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key != "timings"}


def test_tiny_workflow_through_slurm_equals_local_run(slurm, tmp_path):
    """kmeans → train → extract → evaluate of one tiny run as SLURM jobs; metrics == local."""
    for needed in (REPO / "workflow" / "Snakefile", REPO / "config" / "tiny.yaml"):
        if not needed.exists():
            pytest.skip(f"{needed} missing")
    for name in ("cluster", "local"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "extra.yaml").write_text(EXTRA_CONFIG)
    # Both runs at once: the SLURM jobs and the local ones each take one CPU.
    cluster_proc = subprocess.Popen(
        [SNAKEMAKE, *SLURM_ARGS, *WORKFLOW_ARGS],
        cwd=tmp_path / "cluster",
        env=run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        snakemake(tmp_path / "local", "--cores", "1", *WORKFLOW_ARGS)
        cluster_out, _ = cluster_proc.communicate(timeout=900)
    finally:
        if cluster_proc.poll() is None:
            cluster_proc.kill()
    assert cluster_proc.returncode == 0, cluster_out[-4000:]

    jobs = slurm_jobs(cluster_out)
    # The plugin's job comment is rule_<name>[_wildcards_<values>].
    by_rule = {re.sub(r"^rule_|_wildcards_.*$", "", job["comment"]): job for job in jobs}
    assert {"kmeans", "train", "extract", "evaluate"} <= set(by_rule), jobs
    assert all(job["state"] == "COMPLETED" for job in jobs), jobs
    # The sizes each rule declared from the config are what SLURM allocated.
    assert (by_rule["train"]["mem"], by_rule["train"]["timelimit"]) == ("1500M", "12:00")
    assert (by_rule["evaluate"]["mem"], by_rule["evaluate"]["timelimit"]) == ("1000M", "10:00")
    assert all(job["cpus"] == "1" for job in jobs)

    cluster, local = (json.loads((tmp_path / n / TARGET).read_text()) for n in ("cluster", "local"))
    assert without_timings(cluster) == without_timings(local)
    assert cluster["num_q"] > 0 and set(cluster["recalls"]) == {"1", "5", "10", "20"}
    ranks = [
        np.load(tmp_path / n / TARGET.replace(".json", "-perquery.npz"))
        for n in ("cluster", "local")
    ]
    for key in ("indices", "first_hit_rank"):
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key])
    descriptors = f"results/descriptors/{RUN}/pitts30k-test-q.npy"
    np.testing.assert_array_equal(
        np.load(tmp_path / "cluster" / descriptors), np.load(tmp_path / "local" / descriptors)
    )


def slurm_gpus() -> int:
    """GPUs the SLURM node offers (`.ci/slurm-up.sh` adds fake ones on a machine without)."""
    out = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=20)
    found = re.search(r"gpu(?::\w+)?:(\d+)", out.stdout)
    return int(found.group(1)) if found else 0


def tres_per_job(jobids: list[str]) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "-j", ",".join(jobids), "-O", "JobID:20,tres-per-job:60"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(line.split(maxsplit=1) for line in out.splitlines() if line.strip())


# Each job notes the GPU it was given, its SLURM job and the interval it ran in.
RECORD = (
    "import json, os, sys, time; t0 = time.time(); time.sleep(2); "
    "json.dump({'dev': os.environ.get('CUDA_VISIBLE_DEVICES'), 'job': os.environ['SLURM_JOB_ID'],"
    " 'start': t0, 'end': time.time()}, open(sys.argv[1], 'w'))"
)
GPU_SNAKEFILE = """
wildcard_constraints:
    i=r"\\d+"

rule all:
    input: expand("out/{i}.json", i=range(3)), "out/model.json"

rule gpu_job:
    output: "out/{i}.json"
    threads: 1
    resources: gpu=1, mem_mb=100, runtime=5
    shell: "{ICSA} gpu run --lock-dir locks -- {PY} -c {RECORD:q} {output}"

rule gpu_model_job:
    output: "out/model.json"
    threads: 1
    resources: gpu=1, gpu_model="fake", mem_mb=100, runtime=5
    shell: "{ICSA} gpu run --lock-dir locks -- {PY} -c {RECORD:q} {output}"
"""


def test_gpu_rules_get_their_own_slurm_gpu(slurm, tmp_path):
    """`gpu=1` (and `gpu_model`) become sbatch --gpus; SLURM pins each job to its own device and
    `icsa gpu run` inside the job keeps SLURM's choice instead of locking."""
    if slurm_gpus() < 2:
        unavailable("SLURM", "the SLURM node offers fewer than 2 GPUs (see .ci/slurm-up.sh)")
    icsa = str(Path(sys.executable).with_name("icsa"))
    (tmp_path / "Snakefile").write_text(
        f"ICSA = {icsa!r}\nPY = {sys.executable!r}\nRECORD = {RECORD!r}\n" + GPU_SNAKEFILE
    )
    result = snakemake(tmp_path, *SLURM_ARGS)
    jobs = slurm_jobs(result.stdout + result.stderr)
    assert len(jobs) == 4 and all(job["state"] == "COMPLETED" for job in jobs), jobs
    tres = tres_per_job([job["jobid"] for job in jobs])
    by_rule = {job["jobid"]: re.sub(r"^rule_|_wildcards_.*$", "", job["comment"]) for job in jobs}
    for jobid, rule in by_rule.items():
        expected = "gres:gpu:fake:1" if rule == "gpu_model_job" else "gres:gpu:1"
        assert tres[jobid].strip() == expected, (rule, tres[jobid])

    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*.json"))]
    assert {r["job"] for r in records} == set(by_rule)  # each ran inside its own SLURM job
    assert all(r["dev"] in ("0", "1") for r in records), records  # set by SLURM
    assert not (tmp_path / "locks").exists(), "inside SLURM the allocator must not lock"
    for a in records:
        for b in records:
            overlap = a is not b and a["start"] < b["end"] and b["start"] < a["end"]
            assert not (overlap and a["dev"] == b["dev"]), (a, b)
