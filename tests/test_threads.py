"""Threads that fit the machine (issue 14): the CPUs a process may use come from its affinity
mask and its cgroup quota, and torch is never given more threads than that."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from icsa.utils import _cgroup_cpu_limit, available_cpus


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "50000 100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
        ({}, None),
        ({"cpu.max": "garbage\n"}, None),
    ],
    ids=["v2-none", "v2-1.5", "v2-half", "v1-none", "v1-3", "no-cgroup", "unreadable"],
)
def test_cgroup_quota_v1_and_v2(tmp_path, files, limit):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _cgroup_cpu_limit(tmp_path) == limit


def test_quota_caps_the_affinity_mask_rounded_up(tmp_path):
    mask = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1  # half a CPU is still one thread
    (tmp_path / "cpu.max").write_text(f"{100000 * (mask + 4)} 100000\n")
    assert available_cpus(tmp_path) == mask  # a quota above the mask does not add CPUs


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to pin to one")
def test_a_process_pinned_to_one_cpu_gets_one_thread():
    """Real affinity (as taskset or a SLURM cgroup binding would set it): asking for 2 threads
    on 1 CPU gives 1, with a warning."""
    code = (
        "import os, logging; logging.basicConfig()\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "import torch; from icsa.utils import available_cpus, set_threads\n"
        "torch.set_num_threads(1)\n"
        "print(available_cpus(), set_threads(2), torch.get_num_threads(), set_threads(None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1", "1"]
    assert "2 threads asked for, 1 CPU(s) available: using 1" in out.stderr


ROOT = Path(__file__).resolve().parents[1]


def test_one_meaning_of_how_many_cpus():
    """icsa.utils.available_cpus is the only place that counts CPUs: the workflow's job sizing,
    the synthetic city's render processes and `icsa prepare check --workers` use it (the
    efficiency record's `cpu_count` describes the machine, not what a job may use)."""
    counting = re.compile(r"sched_getaffinity|cpu_count\(")
    sources = [*(ROOT / "icsa").rglob("*.py"), *(ROOT / "workflow").rglob("*.smk"),
               ROOT / "workflow" / "Snakefile"]  # fmt: skip
    found = {
        str(path.relative_to(ROOT))
        for path in sources
        for line in path.read_text().splitlines()
        if counting.search(line) and '"cpu_count": os.cpu_count()' not in line
    }
    assert found == {"icsa/utils.py"}
    assert "from icsa.utils import available_cpus" in (
        ROOT / "workflow" / "rules" / "common.smk"
    ).read_text()  # fmt: skip


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to pin to one")
def test_defaults_follow_the_affinity_mask():
    """Pinned to one CPU (taskset, a SLURM binding), the synthetic city renders in one process
    and `icsa prepare check` decodes with one worker, where os.cpu_count() would say more."""
    code = (
        "import os\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "from icsa.cli import build_parser\n"
        "from icsa.data.synthetic.writer import default_workers\n"
        "args = build_parser().parse_args(['prepare', 'check', '--root', 'x', '--dataset', 'p'])\n"
        "print(os.cpu_count() > 1, default_workers(), args.workers)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "1", "1"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to pin to one")
def test_the_workflow_sizes_jobs_by_the_cpus_it_may_use(tmp_path):
    """Snakemake pinned to one CPU with --cores 4: every one-CPU job claims all 4 cores (one job
    at a time, never 4 busy threads on 1 CPU) and runs with 1 thread; with --cores 1 the claim
    is the job's CPUs."""
    from tests.helpers.workflow import env, scratch_workdir, snakemake_command

    work = scratch_workdir(tmp_path)
    cpu = sorted(os.sched_getaffinity(0))[0]

    def plan(cores: str) -> set[tuple[str, str, str]]:
        out = subprocess.run(
            [*snakemake_command(work), "-n", "--cores", cores, "results/table6.csv"], cwd=work,
            env=env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )  # fmt: skip
        assert out.returncode == 0, out.stdout[-3000:]
        jobs = set()
        for job in re.split(r"\n(?=\[)", out.stdout):  # one block per job
            if rule := re.search(r"^(?:local)?rule (\w+):", job, re.M):
                threads = re.search(r"threads: (\d+)", job)  # not shown when 1
                cpus = re.search(r"cpus_per_task=(\d+)", job)
                jobs.add((rule[1], threads[1] if threads else "1", cpus[1]))
        assert {rule for rule, _, _ in jobs} >= {"train", "extract", "evaluate", "table"}
        return jobs

    assert {(threads, cpus) for _, threads, cpus in plan("4")} == {("4", "1")}
    assert {(threads, cpus) for _, threads, cpus in plan("1")} == {("1", "1")}
