"""The per-device file-lock allocator (`icsa gpu run`), on simulated devices.

Jobs are real processes run in parallel; each child records the CUDA_VISIBLE_DEVICES it saw and
the wall-clock interval it ran in. Because a device's lock is held from before the child starts
until after it ends, the intervals recorded on one device must never overlap.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from icsa.errors import InputError
from icsa.gpu import parse_devices, resolve_devices, run_on_device, try_lock

ICSA = [str(Path(sys.executable).with_name("icsa"))]
# The child: note the device and the interval, sleeping SLEEP seconds in between.
RECORD = (
    "import json, os, sys, time; t0 = time.time(); time.sleep(float(sys.argv[2])); "
    "json.dump({'dev': os.environ['CUDA_VISIBLE_DEVICES'], 'start': t0, 'end': time.time()}, "
    "open(sys.argv[1], 'w'))"
)


def _wrapper_main(cmd: list[str], devices: str, lock_dir: Path) -> None:
    os._exit(run_on_device(cmd, devices=devices, lock_dir=lock_dir, poll=0.05))


def start_wrapper(lock_dir: Path, devices: str, *cmd: str) -> multiprocessing.Process:
    """`icsa gpu run` as a separate process, forked so as not to pay a fresh torch import each.

    The CLI itself (argument parsing, exit status) runs for real in the Snakemake test below.
    """
    proc = multiprocessing.get_context("fork").Process(
        target=_wrapper_main, args=(list(cmd), devices, lock_dir)
    )
    proc.start()
    return proc


def load_records(paths: list[Path]) -> list[dict]:
    return [json.loads(p.read_text()) for p in paths]


def assert_no_shared_device(records: list[dict]) -> None:
    by_device: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        by_device.setdefault(rec["dev"], []).append((rec["start"], rec["end"]))
    for dev, spans in by_device.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"two jobs on device {dev} at once: {spans}"


def max_concurrency(records: list[dict]) -> int:
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def is_free(lock_dir: Path, device: str) -> bool:
    held = try_lock(lock_dir, [device])
    if held is None:
        return False
    os.close(held[1])
    return True


def test_parse_devices_counts_and_lists():
    assert parse_devices("3") == ["0", "1", "2"]
    assert parse_devices("0,2") == ["0", "2"]
    assert parse_devices("3,") == ["3"]
    assert parse_devices("GPU-ab12, GPU-cd34") == ["GPU-ab12", "GPU-cd34"]
    for bad in ("0", "1,1", "a b", ",", "0;1"):
        with pytest.raises(InputError, match="--devices"):
            parse_devices(bad)


def test_resolve_devices_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi on PATH
    assert resolve_devices("2", {"ICSA_GPU_DEVICES": "5,6"}) == ["0", "1"]
    assert resolve_devices(None, {"ICSA_GPU_DEVICES": "5,6"}) == ["5", "6"]
    with pytest.raises(InputError, match="nvidia-smi"):
        resolve_devices(None, {})
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: A (UUID: GPU-1)'\necho 'GPU 1: A (UUID: GPU-2)'\n")
    fake.chmod(0o755)
    assert resolve_devices(None, {}) == ["0", "1"]


def test_more_jobs_than_devices_never_share_one(tmp_path):
    """3 devices, 7 parallel jobs: every job gets a device, none shares one at any time."""
    outs = [tmp_path / f"job{i}.json" for i in range(7)]
    procs = [
        start_wrapper(tmp_path / "locks", "0,1,2", sys.executable, "-c", RECORD, str(out), "0.3")
        for out in outs
    ]
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 7
    records = load_records(outs)
    assert {r["dev"] for r in records} <= {"0", "1", "2"}
    assert_no_shared_device(records)
    assert max_concurrency(records) <= 3
    assert len({r["dev"] for r in records}) >= 2, "jobs were serialised onto one device"
    assert all(is_free(tmp_path / "locks", d) for d in "012")


def test_failing_job_returns_its_status_and_releases(tmp_path):
    code = run_on_device(
        [sys.executable, "-c", "raise SystemExit(7)"], devices="1", lock_dir=tmp_path
    )
    assert code == 7 and is_free(tmp_path, "0")
    killed = run_on_device(["sh", "-c", "kill -9 $$"], devices="1", lock_dir=tmp_path)
    assert killed == 128 + signal.SIGKILL and is_free(tmp_path, "0")


def test_busy_device_waits_and_times_out(tmp_path):
    held = try_lock(tmp_path, ["0"])
    assert held is not None
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            run_on_device(["true"], devices="1", lock_dir=tmp_path, poll=0.05, timeout=0.3)
        assert time.monotonic() - start >= 0.3
        # the other device is free: taken at once
        assert run_on_device(["true"], devices="0,1", lock_dir=tmp_path) == 0
    finally:
        os.close(held[1])


def _start_holder(
    tmp_path: Path, marker: Path, ignore_term: bool = False
) -> multiprocessing.Process:
    """A wrapper holding device 0 for a child that writes its pid to ``marker``, then sleeps."""
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else ""
    child = (
        f"import os, pathlib, signal, time; {ignore}"
        f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid())); time.sleep(60)"
    )
    proc = start_wrapper(tmp_path / "locks", "1", sys.executable, "-c", child)
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert proc.is_alive() and time.monotonic() < deadline, "holder never started"
        time.sleep(0.05)
    assert not is_free(tmp_path / "locks", "0")
    return proc


def _wait_free(lock_dir: Path, device: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not is_free(lock_dir, device):
        assert time.monotonic() < deadline, f"device {device} still locked after {seconds} s"
        time.sleep(0.05)


def test_sigkill_of_the_wrapper_releases_the_device(tmp_path):
    """The kernel drops the lock; the child, told by PDEATHSIG, does not run on unseen."""
    proc = _start_holder(tmp_path, tmp_path / "started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=10)
    _wait_free(tmp_path / "locks", "0")


def test_device_stays_taken_while_an_orphaned_child_runs(tmp_path):
    """Wrapper killed, child survives (ignores SIGTERM): the child's copy of the lock keeps the
    device taken until the child itself ends."""
    marker = tmp_path / "started"
    proc = _start_holder(tmp_path, marker, ignore_term=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=10)
    time.sleep(0.5)
    assert not is_free(tmp_path / "locks", "0")
    os.kill(int(marker.read_text()), signal.SIGKILL)
    _wait_free(tmp_path / "locks", "0")


def test_sigterm_is_forwarded_and_releases(tmp_path):
    proc = _start_holder(tmp_path, tmp_path / "started")
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(timeout=10)
    assert proc.exitcode == 128 + signal.SIGTERM  # the child died of the forwarded signal
    assert is_free(tmp_path / "locks", "0")


def test_inside_slurm_uses_the_granted_devices(tmp_path):
    show = [
        sys.executable,
        "-c",
        "import os; raise SystemExit(int(os.environ['CUDA_VISIBLE_DEVICES']))",
    ]
    env = {**os.environ, "SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3"}
    env.pop("ICSA_GPU_DEVICES", None)
    assert run_on_device(show, lock_dir=tmp_path, env=env) == 3
    assert not list(tmp_path.iterdir()), "a single granted GPU needs no lock"
    # Several granted GPUs are shared out by locks in a namespace of this allocation.
    env["CUDA_VISIBLE_DEVICES"] = "5,6"
    (tmp_path / "slurm-42").mkdir()
    held = try_lock(tmp_path / "slurm-42", ["5"])
    try:
        assert run_on_device(show, lock_dir=tmp_path, env=env) == 6
    finally:
        os.close(held[1])
    assert run_on_device(show, lock_dir=tmp_path, env=env) == 5


SNAKEFILE = textwrap.dedent(
    """
    JOBS = range(3)
    rule all:
        input: expand("out/{i}.json", i=JOBS)
    rule gpu_job:
        output: "out/{i}.json"
        threads: 1
        resources: gpu=1, mem_mb=100
        shell: "{ICSA} gpu run --lock-dir locks --devices 0,1 --poll 0.05 -- "
               "{PY} -c {RECORD:q} {output} 0.4"
    """
)


def run_snakemake(workdir: Path, *args: str) -> str:
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    result = subprocess.run(
        [snakemake, *args], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_snakemake_gpu_resources_with_allocator(tmp_path):
    """`snakemake --cores 4 --resources gpu=2`: at most 2 jobs at once, each on its own device."""
    (tmp_path / "Snakefile").write_text(
        f"ICSA = {' '.join(ICSA)!r}\nPY = {sys.executable!r}\nRECORD = {RECORD!r}\n" + SNAKEFILE
    )
    run_snakemake(tmp_path, "--cores", "4", "--resources", "gpu=2", "--quiet", "all")
    records = load_records(sorted((tmp_path / "out").glob("*.json")))
    assert len(records) == 3 and {r["dev"] for r in records} <= {"0", "1"}
    assert_no_shared_device(records)
    assert max_concurrency(records) <= 2


def dry_run_jobs(workdir: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    """Rule name → its jobs' resources and shell command, from `snakemake -n -p`."""
    output = run_snakemake(workdir, "-n", "-p", *args)
    jobs: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        found = {
            key: m.group(1) if (m := re.search(rf"^\s*{key}: (.*)$", block, re.M)) else ""
            for key in ("resources", "Shell command")
        }
        jobs.setdefault(rule, []).append(found)
    return jobs


def test_workflow_gpu_rules_declare_a_gpu_and_use_the_allocator(tmp_path):
    """The real workflow with device=cuda: train/extract ask for gpu=1 and run through
    `icsa gpu run`; every job declares its CPUs, memory and run time."""
    repo = Path(__file__).resolve().parents[1]
    target = "results/metrics/pitts30k-vgg16-icsa-b5-s0/pitts30k-test.json"
    snakefile, config = str(repo / "workflow" / "Snakefile"), str(repo / "config" / "config.yaml")
    options = ["--config", "device=cuda", "--cores", "8", "--resources", "gpu=2", "--"]
    jobs = dry_run_jobs(tmp_path, "-s", snakefile, "--configfile", config, *options, target)
    assert {"train", "extract", "evaluate", "kmeans"} <= set(jobs)
    for rule, entries in jobs.items():
        for job in entries:
            for resource in ("mem_mb", "runtime", "cpus_per_task"):
                assert re.search(rf"\b{resource}=\d+", job["resources"]), (rule, resource, job)
            uses_gpu = rule in ("train", "extract")
            assert bool(re.search(r"\bgpu=1\b", job["resources"])) == uses_gpu, (rule, job)
            assert ("icsa gpu run --lock-dir" in job["Shell command"]) == uses_gpu, (rule, job)
