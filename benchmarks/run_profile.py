"""Where a workflow run's time went: Snakemake's per-job `benchmark:` files summed by rule.

    .venv/bin/python benchmarks/run_profile.py [FOLDER]   # default: the run's benchmarks folder

Each rule with a ``benchmark:`` directive writes one TSV per job under
``<results>/benchmarks/<rule>/`` (``icsa.layout.BENCHMARKS``): wall seconds (``s``) and CPU seconds
(``cpu_time``, the job's process tree). Jobs of one rule are summed; wall ÷ CPU above 1 means the
job waited (for a CPU shared with the job beside it, or for I/O). Rules without a benchmark
(evaluate, check, tables) are not in it: the run's own ``/usr/bin/time`` gives the total.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsa.layout import BENCHMARKS  # noqa: E402


def summarise(folder: Path) -> dict[str, dict[str, float]]:
    """Per rule: jobs, summed wall and CPU seconds, the largest job's CPU seconds."""
    out: dict[str, dict[str, float]] = {}
    for tsv in sorted(folder.rglob("*.tsv")):
        rule = tsv.relative_to(folder).parts[0]
        with tsv.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        last = rows[-1]  # a job rerun appends nothing; repeat=1 writes one row
        wall, cpu = float(last["s"]), float(last["cpu_time"])
        r = out.setdefault(rule, {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "max_cpu_s": 0.0})
        r["jobs"] += 1
        r["wall_s"] += wall
        r["cpu_s"] += cpu
        r["max_cpu_s"] = max(r["max_cpu_s"], cpu)
    return out


def render(summary: dict[str, dict[str, float]]) -> str:
    lines = [
        "| rule | jobs | wall s (sum) | CPU s (sum) | CPU s per job | largest job CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for rule, r in sorted(summary.items(), key=lambda kv: -kv[1]["cpu_s"]):
        lines.append(
            f"| {rule} | {r['jobs']:.0f} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
            f"{r['cpu_s'] / r['jobs']:.1f} | {r['max_cpu_s']:.1f} |"
        )
    total = sum(r["cpu_s"] for r in summary.values())
    lines.append(f"| **all** | {sum(r['jobs'] for r in summary.values()):.0f} | | "
                 f"**{total:.0f}** | | |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, nargs="?", default=Path(BENCHMARKS))
    args = p.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"{args.folder}: not a folder; expected a run's {BENCHMARKS}")
    print(render(summarise(args.folder)))


if __name__ == "__main__":
    main()
