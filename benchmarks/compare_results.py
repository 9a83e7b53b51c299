"""Compare two workflow working folders: did a change keep every number?

For a refactor that must not change results: run the same target (e.g. the tiny workflow,
`snakemake --cores 2 --configfile config/tiny.yaml -- tables`) in a checkout of the old commit
and one of the new, then

    .venv/bin/python benchmarks/compare_results.py OLD_FOLDER NEW_FOLDER

It compares, under each folder's results/ (paths from icsa.layout):
- every descriptor .npy and every per-query .npz array, bit for bit;
- of every metrics JSON, the recalls, the found counts and the split sizes (not the timings);
- every table CSV except those of efficiency tables (their times are measurements; such a
  table has a time_ms column).
Exit status 1 and one line per difference when anything differs or a file exists on one side.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

from icsa import layout

METRIC_KEYS = ("recalls", "found", "num_db", "num_q", "queries_without_positive")


def relative(root: Path, pattern: str) -> set[str]:
    return {str(Path(p).relative_to(root)) for p in glob.glob(str(root / pattern))}


def same_arrays(a: Path, b: Path) -> bool:
    if a.suffix == ".npy":
        return np.array_equal(np.load(a), np.load(b))
    with np.load(a) as x, np.load(b) as y:
        return sorted(x) == sorted(y) and all(np.array_equal(x[k], y[k]) for k in x)


def is_efficiency_table(csv: Path) -> bool:
    """A table of module sizes and forward times (kind efficiency): its times are measurements."""
    header = csv.read_text().split("\n", 1)[0].split(",")
    return "time_ms" in header


def compare(old: Path, new: Path) -> tuple[int, list[str]]:
    """(files compared, differences) between the results of two working folders."""
    differences: list[str] = []
    compared = 0
    arrays = (layout.descriptors_file("*", "*", "*"), layout.perquery_file("*", "*"))
    for pattern in arrays:
        a, b = relative(old, pattern), relative(new, pattern)
        differences += [f"only in one folder: {f}" for f in sorted(a ^ b)]
        for name in sorted(a & b):
            compared += 1
            if not same_arrays(old / name, new / name):
                differences.append(f"differs: {name}")
    pattern = layout.metrics_file("*", "*")
    a, b = relative(old, pattern), relative(new, pattern)
    differences += [f"only in one folder: {f}" for f in sorted(a ^ b)]
    for name in sorted(a & b):
        compared += 1
        x, y = (json.loads((root / name).read_text()) for root in (old, new))
        differences += [f"differs: {name} {key}" for key in METRIC_KEYS if x.get(key) != y.get(key)]
    for name in sorted(relative(old, layout.table_file("*", "csv"))):
        if is_efficiency_table(old / name):
            continue
        compared += 1
        if not (new / name).is_file() or (old / name).read_text() != (new / name).read_text():
            differences.append(f"differs: {name}")
    return compared, differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="working folder of the old commit")
    parser.add_argument("new", type=Path, help="working folder of the new commit")
    args = parser.parse_args()
    compared, differences = compare(args.old, args.new)
    for line in differences:
        print(line)
    print(f"compared {compared} files, {len(differences)} differences")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
