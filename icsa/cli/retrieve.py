"""`icsa retrieve`: the top-k database images of each query image, as CSV.

    icsa retrieve --db DB.npy --q Q.npy --out matches.csv [--k 5] [--db-names DB.txt]
                  [--q-names Q.txt] [--memory-budget-mb MB] [--threads N] [--device auto|cpu|cuda]

The descriptors and names are what ``icsa extract --images DIR --out X.npy`` writes (names
default to the ``.txt`` beside each ``.npy``). One row per (query, rank): ``query, rank,
database, distance`` — rank 1 is the nearest, distance the L2 distance between the descriptors
(exact search, icsa.evaluate.search; ties in index order).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from icsa.cli.evaluate import DEVICES
from icsa.errors import InputError

COLUMNS = ("query", "rank", "database", "distance")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("retrieve", help="top-k database matches of each query → CSV")
    p.add_argument("--db", required=True, type=Path, help="database descriptors .npy")
    p.add_argument("--q", required=True, type=Path, help="query descriptors .npy")
    p.add_argument("--db-names", type=Path, default=None, help="default: DB.txt beside --db")
    p.add_argument("--q-names", type=Path, default=None, help="default: Q.txt beside --q")
    p.add_argument("--k", type=int, default=5, help="matches per query (capped at the database)")
    p.add_argument("--out", required=True, type=Path, help="the CSV")
    p.add_argument("--memory-budget-mb", type=float, default=None, help="shard the database")
    p.add_argument("--device", choices=list(DEVICES), default="auto", help="faiss GPU or CPU")
    p.add_argument("--threads", type=int, default=1, help="faiss threads")
    p.set_defaults(func=_retrieve)


def _retrieve(args: argparse.Namespace) -> int:
    import faiss
    import numpy as np

    from icsa.evaluate.folder import names_file, read_names
    from icsa.evaluate.metrics import load_descriptors
    from icsa.evaluate.search import search
    from icsa.io import atomic_path

    if args.k < 1:
        raise InputError(f"--k {args.k}: expected at least 1")
    faiss.omp_set_num_threads(max(1, args.threads))
    sides = {}
    for what, path, names in (
        ("database", args.db, args.db_names),
        ("query", args.q, args.q_names),
    ):
        descriptors = load_descriptors(path, None, what)
        sides[what] = (descriptors, read_names(names or names_file(path), len(descriptors)))
    (db, db_names), (q, q_names) = sides["database"], sides["query"]
    squared, indices = search(db, q, args.k, memory_budget_mb=args.memory_budget_mb,
                              use_gpu=DEVICES[args.device])  # fmt: skip
    with atomic_path(args.out) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i, name in enumerate(q_names):
            for rank, (j, d2) in enumerate(zip(indices[i], squared[i]), start=1):
                writer.writerow([name, rank, db_names[j], f"{float(np.sqrt(max(d2, 0.0))):.6f}"])
    print(f"{len(q_names)} queries × top {indices.shape[1]} of {len(db_names)} → {args.out}")
    return 0
