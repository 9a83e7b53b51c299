"""Does training beat the untrained backbone (block none) on the embedded city? Probe recipes.

    .venv/bin/python benchmarks/training_effect.py [--cores 2] [PROBE ...]

Each probe of ``benchmarks/training_effect_probes.yaml`` (default: all) is its ``base`` with the
probe's changes merged over it; that override is laid over ``config/config.yaml`` and builds
``results/table5.csv`` with the real Snakemake in its own scratch folder: the pipeline's own
data, k-means, training, extraction, evaluation and table.
For every row it records R@1 (mean ± std over seeds), ΔR@1 against block none with the
two-level (seeds × queries) 95% interval, and the median query-to-database descriptor distance
of seed 0 on the test split: how far apart the descriptors stay (L2-normalised, so 0..2). A
recipe that collapses the descriptor space shows as a shrinking distance. Writes
``benchmarks/results/training_effect.md``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from snakemake.utils import update_config

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_threads import gemm_rate  # noqa: E402

from icsa import layout  # noqa: E402
from icsa.spec import run_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROBES = ROOT / "benchmarks" / "training_effect_probes.yaml"
OUT = ROOT / "benchmarks" / "results" / "training_effect.md"


def probe_overrides() -> dict[str, tuple[str, dict]]:
    """Probe name → (what it changes, its whole override)."""
    probes = yaml.safe_load(PROBES.read_text())
    out = {}
    for name, changes in probes["probes"].items():
        changes = copy.deepcopy(changes)
        about = changes.pop("about")
        override = copy.deepcopy(probes["base"])
        update_config(override, changes)
        out[name] = (about, override)
    return out


def run_probe(override: dict, workdir: Path, cores: int) -> float:
    """Build table5 under ``override`` in ``workdir``; returns the wall seconds."""
    shutil.copytree(ROOT / "config", workdir / "config")
    (workdir / "override.yaml").write_text(yaml.safe_dump(override, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [
        str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"),
        "-d", str(workdir), "--configfile", "config/config.yaml", "override.yaml",
        "--cores", str(cores), layout.table_file("table5", "csv"),
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, text=True, capture_output=True)
    if done.returncode:
        raise SystemExit(f"{workdir.name}: snakemake failed\n{done.stdout[-3000:]}")
    return time.perf_counter() - start


def median_distance(results: Path, run: str, evalset: str) -> float:
    """Median L2 distance between every test query and every database descriptor."""
    db = np.load(layout.descriptors_file(run, evalset, "db", results)).astype(np.float64)
    q = np.load(layout.descriptors_file(run, evalset, "q", results)).astype(np.float64)
    return float(np.median(np.sqrt(np.maximum(2.0 - 2.0 * q @ db.T, 0.0))))


def probe_rows(workdir: Path) -> list[str]:
    """Markdown rows of one probe's table5 (block, R@1, ΔR@1 vs block none, distance)."""
    rows = []
    results = workdir / layout.RESULTS
    with open(layout.table_file("table5", "csv", results), newline="") as handle:
        for row in csv.DictReader(handle):
            block = row["block"].removeprefix("block")  # "none", "block5" → run id b5
            run = run_id("pitts30k", "vgg16", row["attention"], block, 0)
            dist = median_distance(results, run, row["evalset"])
            delta = "(baseline)"
            if row["dR@1_block"]:
                mark = " *" if row["dR@1_block_marked"] == "True" else ""
                delta = (f"{float(row['dR@1_block']):+.1f} [{float(row['dR@1_block_low']):+.1f},"
                         f" {float(row['dR@1_block_high']):+.1f}]{mark}")  # fmt: skip
            rows.append(f"| {row['block']} | {float(row['R@1']):.1f} ± {float(row['R@1_std']):.1f}"
                        f" | {delta} | {dist:.2f} |")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probes", nargs="*", help="probe names (default: all)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    overrides = probe_overrides()
    unknown = sorted(set(args.probes) - set(overrides))
    if unknown:
        parser.error(f"unknown probes {unknown}; the probes are {sorted(overrides)}")
    names = args.probes or list(overrides)
    lines = [
        "# Training effect on the embedded city: trained blocks vs block none",
        "",
        "`.venv/bin/python benchmarks/training_effect.py` (probes in "
        "`benchmarks/training_effect_probes.yaml`, each over `config/config.yaml`; VGG16, no "
        "attention, random init, 2 or 3 seeds, 700 test queries). ΔR@1 in points vs block "
        "none, two-level 95% interval (* = excludes 0). Distance: median test "
        "query-to-database descriptor distance of seed 0 (block none keeps the "
        "k-means-initialised spread).",
        "",
        f"2-thread fp32 GEMM before: {gemm_rate():.0f} GFLOP/s.",
    ]
    with tempfile.TemporaryDirectory(prefix="training-effect-") as scratch:
        for name in names:
            about, override = overrides[name]
            workdir = Path(scratch) / name
            wall = run_probe(override, workdir, args.cores)
            lines += ["", f"## {name} ({wall:.0f} s)", "", about, "",
                      "| lowest trained block | R@1 | ΔR@1 vs block none | distance |",
                      "|---|---|---|---|", *probe_rows(workdir)]  # fmt: skip
            print("\n".join(lines[-6:]), flush=True)
    lines += ["", f"2-thread fp32 GEMM after: {gemm_rate():.0f} GFLOP/s.", ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
