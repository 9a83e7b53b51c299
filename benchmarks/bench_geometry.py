"""Benchmark place geometry at Pitts250k scale (250k database × 24k queries).

Two coordinate models: a street grid that mimics Pittsburgh 250k (about 10.6k places, 24 images
per place at one position, places every 8 m along streets, queries near streets) and points
uniform in a 10 km square. Also Pitts30k-train-sized potential negatives, and a brute-force
reference on a query subset (extrapolated) for comparison. Writes benchmarks/results/geometry.md.

    .venv/bin/python benchmarks/bench_geometry.py [--workers 1] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from icsa.data import positives_within, potential_negatives
from icsa.io import atomic_path
from icsa.train.mining import sample_negatives


def street_city(rng: np.random.Generator, num_db: int, num_q: int):
    """Places every 8 m on a grid of streets 80 m apart; 24 db images share each place."""
    per_place, spacing, block = 24, 8.0, 80.0
    num_places = num_db // per_place
    street_len = int(np.ceil(np.sqrt(num_places * spacing * block / 2)))  # square-ish city
    lines = int(street_len // block) + 1
    along = rng.uniform(0, street_len, num_places)
    which = rng.integers(0, lines, num_places)
    horizontal = rng.random(num_places) < 0.5
    xy = np.where(
        horizontal[:, None],
        np.stack([along, which * block], 1),
        np.stack([which * block, along], 1),
    )
    xy = np.round(xy / spacing) * spacing  # snap to the 8 m place spacing
    db = np.repeat(xy, per_place, axis=0)[:num_db]
    anchors = db[rng.integers(0, len(db), num_q)]
    q = anchors + rng.normal(0, 6.0, size=(num_q, 2))  # queries near the streets
    origin = np.array([585000.0, 4477000.0])  # UTM-sized numbers, as in the real files
    return db + origin, q + origin


def uniform_city(rng: np.random.Generator, num_db: int, num_q: int):
    return rng.uniform(0, 10_000, (num_db, 2)), rng.uniform(0, 10_000, (num_q, 2))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def brute_force_seconds(db: np.ndarray, q: np.ndarray, radius: float, sample: int) -> float:
    """Seconds a dense [M, N] distance scan would take, extrapolated from ``sample`` queries."""
    start = time.perf_counter()
    for chunk in np.array_split(q[:sample], max(1, sample // 50)):
        d2 = ((chunk[:, None, :] - db[None, :, :]) ** 2).sum(-1)
        [np.flatnonzero(row <= radius * radius) for row in d2]
    return (time.perf_counter() - start) * len(q) / sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="KD-tree query threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/geometry.md"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for label, make in (
        ("street grid (Pitts250k-like)", street_city),
        ("uniform 10 km", uniform_city),
    ):
        db, q = make(rng, 250_000, 24_000)
        for radius in (25.0, 10.0):
            pos, secs = timed(positives_within, db, q, radius, workers=args.workers)
            counts = np.array([len(p) for p in pos])
            rows.append(
                f"| {label} | 250,000 × 24,000 | positives_within r={radius:g} m | {secs:.2f} s "
                f"| mean {counts.mean():.1f}, max {counts.max()} positives/query |"
            )
        brute = brute_force_seconds(db, q, 25.0, sample=200)
        rows.append(
            f"| {label} | 250,000 × 24,000 | brute force r=25 m (extrapolated from 200 q) "
            f"| {brute:.0f} s | dense scan, for comparison |"
        )
    db, q = street_city(rng, 10_000, 7_416)
    negs, secs = timed(potential_negatives, db, q, 25.0, workers=args.workers)
    rows.append(
        "| street grid | 10,000 × 7,416 (Pitts30k-train) | potential_negatives r=25 m "
        f"| {secs:.2f} s "
        f"| mean {np.mean([len(n) for n in negs]):.0f} negatives/query |"
    )
    db, q = street_city(rng, 250_000, 24_000)
    near = positives_within(db, q, 25.0, workers=args.workers)
    start = time.perf_counter()
    for i in range(len(q)):
        sample_negatives(near[i], len(db), 1000, rng)
    secs = time.perf_counter() - start
    rows.append(
        "| street grid | 250,000 × 24,000 | sample_negatives 1000/query, all queries "
        f"| {secs:.2f} s "
        "| no full negative lists needed |"
    )
    text = "\n".join(
        [
            "# Geometry benchmark",
            "",
            f"Command: `.venv/bin/python benchmarks/bench_geometry.py --workers {args.workers}`  ",
            f"Machine: {platform.processor() or platform.machine()}, shared 2-core dev box; "
            f"numpy {np.__version__}; KD-tree: scipy cKDTree, {args.workers} worker(s).",
            "",
            "| coordinates | db × queries | operation | time | result |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(text)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
