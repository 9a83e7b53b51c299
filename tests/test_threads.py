"""Threads that fit the machine (issue 14): the CPUs a process may use come from its affinity
mask and its cgroup quota, and torch is never given more threads than that."""

from __future__ import annotations

import os
import subprocess
import sys

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
