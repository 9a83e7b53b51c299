"""Small shared helpers: seeding, threads and device choice.

torch is imported inside each helper, so that the CLI modules that import these helpers load
torch only when a command runs, never for ``--help`` (icsa/lazy.py).
"""

from __future__ import annotations

import logging
import math
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so CPU runs repeat bit-for-bit."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _cgroup_cpu_limit(root: Path) -> float | None:
    """CPUs the cgroup quota allows (quota / period), or None without a quota. cgroup v2
    (``cpu.max``: "max 100000" or "150000 100000") first, then v1 (``cpu.cfs_quota_us``)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: its affinity mask (taskset, SLURM's cgroup binding), capped
    by the cgroup CPU quota (containers), rounded up; at least 1. ``os.cpu_count()`` counts
    the machine's CPUs, which a job that was given fewer must not spin on."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity masks
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def set_threads(threads: int | None) -> int:
    """Make torch use the caller's thread count (Snakemake's ``threads``), never more than
    :func:`available_cpus`: two OpenMP threads on one CPU spin against each other (issue 14
    measured a 2-thread step 2–3× slower than the load explains). ``None`` or 0 leaves
    torch's setting as it is (library callers that set it themselves). Returns the count used."""
    import torch

    if threads is None or threads <= 0:
        return torch.get_num_threads()
    available = available_cpus()
    if threads > available:
        log.warning("%d threads asked for, %d CPU(s) available: using %d", threads, available,
                    available)  # fmt: skip
    torch.set_num_threads(min(threads, available))
    return torch.get_num_threads()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken as given.

    On CUDA this also turns on ``cudnn.benchmark``: every job here runs one fixed input size, so
    cuDNN's search for the fastest convolution algorithm is paid once. GPU runs are not
    bit-reproducible in any case (atomics in the backward pass); CPU runs are."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return resolved
