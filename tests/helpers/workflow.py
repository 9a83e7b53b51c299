"""Run the real Snakemake in a scratch directory (not the checkout), and read its plans.

The Snakefile reads `config/config.yaml` and `config/paper_values.yaml` relative to its working
directory, so each scratch directory gets a copy of `config/`; results, data and `.snakemake`
stay inside it. The venv's `bin/` goes first on PATH so that rules find the `icsa` command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


SNAKEFILE = ROOT / "workflow" / "Snakefile"


BIN = Path(sys.executable).parent


def scratch_workdir(path: Path) -> Path:
    shutil.copytree(ROOT / "config", path / "config", dirs_exist_ok=True)
    return path


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    # One thread per process: the test machine has 2 cores shared with other tests.
    out.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return out


def snakemake_command(workdir: Path, config: str = "config/tiny.yaml") -> list[str]:
    """`snakemake -s workflow/Snakefile -d WORKDIR --configfile CONFIG...` (CONFIG: files
    separated by spaces, later ones override; "" for the Snakefile's default config only)."""
    exe = BIN / "snakemake"
    cmd = [str(exe if exe.exists() else "snakemake"), "-s", str(SNAKEFILE), "-d", str(workdir)]
    return [*cmd, "--configfile", *config.split()] if config else cmd


def snakemake(workdir: Path, *args: str, config: str = "config/tiny.yaml", timeout: float = 900):
    """:func:`snakemake_command` with ``args``, run in ``workdir``; returns the CompletedProcess
    (stdout and stderr merged into stdout)."""
    return subprocess.run(
        [*snakemake_command(workdir, config), *args], cwd=workdir, env=env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
    )  # fmt: skip


def job_counts(output: str) -> Counter:
    """The 'Job stats' table of a (dry) run → Counter(rule → jobs); empty when nothing runs."""
    counts: Counter = Counter()
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+(\d+)", output, re.S)
    if not match:
        return counts
    for line in match.group(1).splitlines():
        rule, count = line.split()
        counts[rule] = int(count)
    assert sum(counts.values()) == int(match.group(2))
    return counts


def planned_runs(output: str) -> set[str]:
    """Run ids whose training the (dry) run plans."""
    return set(re.findall(r"output: results/runs/([^/,\s]+)/checkpoint_best\.pt", output))
