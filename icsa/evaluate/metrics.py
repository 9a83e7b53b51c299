"""Evaluate one split from descriptor files: metrics JSON and per-query results.

The metrics JSON and the per-query ``.npz`` are the contract in docs/architecture.md
("Evaluation"): recalls and found counts per N, queries without any positive, descriptor dims
and timings; per query the top-k ``indices``/``distances`` and ``first_hit_rank`` (−1 = none in
the top-k), from which the tables' paired intervals recompute Found@N. A split whose queries
carry a group (MSLS-val: the city) adds ``per_city``: each group's query count, recalls and
found counts, as MSLS results are reported per city.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icsa.arrays import open_npy
from icsa.data import PlaceSplit
from icsa.errors import InputError
from icsa.evaluate.memmap import read_rows
from icsa.evaluate.pca import PCAWhitening
from icsa.evaluate.policy import EvaluationPolicy, policy_for
from icsa.evaluate.recall import RECALL_VALUES, check_ns, retrieve
from icsa.io import atomic_path, write_json
from icsa.step_settings import POSITIVE_RADIUS_M

# Rows the model writes are L2-normalised. Stored rows may be off 1 by rounding: a bfloat16
# rounding (the fast path's autocast) moves a norm by at most 2^-8, float16 storage by 2^-11, so
# a row normalised in bfloat16 and stored as float16 is still within 0.9 %. A row beyond 1 % was
# never normalised (all zeros, raw features, another tool's output): its distances would rank
# nonsense and be reported as a recall.
NORM_TOLERANCE = 1e-2


@dataclass(frozen=True)
class RowScan:
    """What one read of a descriptor file found: rows with NaN/inf, finite rows off unit norm."""

    nonfinite: int
    off_norm: int
    first_off: tuple[int, float] | None  # (row, norm) of the first finite row off unit norm


def scan_rows(
    arr: np.ndarray, tolerance: float = NORM_TOLERANCE, chunk_bytes: int = 64 * 2**20
) -> RowScan:
    """Check every row of ``arr`` in one read, block by block (memmaps stay unloaded)."""
    step = max(1, chunk_bytes // (4 * max(1, arr.shape[1])))
    nonfinite = off_norm = 0
    first_off = None
    for start in range(0, len(arr), step):
        block = read_rows(arr, start, start + step)  # float32
        finite = np.isfinite(block).all(axis=1)
        norms = np.linalg.norm(block, axis=1)  # pairwise sums: accurate at 32k dimensions
        off = np.flatnonzero(finite & (np.abs(norms - 1.0) > tolerance))
        nonfinite += int(np.count_nonzero(~finite))
        off_norm += len(off)
        if first_off is None and len(off):
            first_off = (start + int(off[0]), float(norms[off[0]]))
    return RowScan(nonfinite, off_norm, first_off)


def count_nonfinite(arr: np.ndarray) -> int:
    """Rows of ``arr`` holding NaN or inf."""
    return scan_rows(arr).nonfinite


def load_descriptors(path: str | os.PathLike, expected_rows: int | None, what: str) -> np.ndarray:
    """Memory-map a descriptor ``.npy``; InputError unless it is [expected_rows, D] (any number
    of rows but 0 with ``expected_rows=None``), finite and L2-normalised row by row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{what} descriptors {path} not found, expected a file from `icsa extract`"
        )
    arr = open_npy(path, f"{what} descriptors")
    if arr.ndim != 2 or arr.dtype not in (np.float32, np.float16):
        raise InputError(
            f"{what} descriptors {path}: {arr.dtype} array of shape {arr.shape}, "
            "expected float32/float16 [rows, dim]"
        )
    if expected_rows is not None and len(arr) != expected_rows:
        raise InputError(
            f"{what} descriptors {path}: {len(arr)} rows, expected {expected_rows} "
            f"(the split's {what} images; descriptors of another split or dataset?)"
        )
    if len(arr) == 0:
        raise InputError(f"{what} descriptors {path}: 0 rows, expected at least one")
    scan = scan_rows(arr)
    if scan.nonfinite:
        raise InputError(
            f"{what} descriptors {path}: {scan.nonfinite} rows contain NaN/inf, expected none"
        )
    if scan.first_off is not None:
        row, norm = scan.first_off
        raise InputError(
            f"{what} descriptors {path}: {scan.off_norm} of {len(arr)} rows are not unit-norm "
            f"(first: row {row}, norm {norm:.6g}); expected L2-normalised rows as the model "
            f"writes them (norm 1 ± {NORM_TOLERANCE:g})"
        )
    return arr


def load_pair(
    split: PlaceSplit, db_path: str | os.PathLike, q_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """The split's database and query descriptors, each checked as :func:`load_descriptors`
    does, and of one dimension."""
    db = load_descriptors(db_path, split.db.num_db, "database")
    q = load_descriptors(q_path, split.db.num_q, "query")
    if db.shape[1] != q.shape[1]:
        raise InputError(
            f"descriptor dims differ: {db_path} is {db.shape[1]}-D, {q_path} is {q.shape[1]}-D; "
            "expected both from the same model"
        )
    return db, q


def whiten_pair(
    pca_path: str | os.PathLike, db: np.ndarray, q: np.ndarray, db_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """``db`` and ``q`` through the PCA whitening at ``pca_path`` (fitted on their dimension)."""
    pca = PCAWhitening.load(pca_path)
    if pca.input_dim != db.shape[1]:
        raise InputError(
            f"PCA {pca_path} was fitted on {pca.input_dim}-D descriptors, but {db_path} is "
            f"{db.shape[1]}-D; expected a PCA fitted on this model's training database"
        )
    return pca.apply(db), pca.apply(q)


def per_group(
    first_hit_rank: np.ndarray, groups: Sequence[str], ns: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Recall@N and Found@N of each group's queries alone (sorted by group name)."""
    groups = np.asarray(groups)
    if len(groups) != len(first_hit_rank):
        raise InputError(f"{len(groups)} query groups, expected {len(first_hit_rank)} (one each)")
    out = {}
    for name in sorted(set(groups.tolist())):
        ranks = first_hit_rank[groups == name]
        found = {str(n): int(np.count_nonzero((ranks >= 0) & (ranks < n))) for n in ns}
        out[str(name)] = {
            "num_q": len(ranks),
            "recalls": {k: v / len(ranks) for k, v in found.items()},
            "found": found,
        }
    return out


def evaluate_split(
    split: PlaceSplit,
    db_path: str | os.PathLike,
    q_path: str | os.PathLike,
    model_id: str,
    ns: Sequence[int] = RECALL_VALUES,
    threshold: float = POSITIVE_RADIUS_M,
    pca_path: str | os.PathLike | None = None,
    memory_budget_mb: float | None = None,
    policy: EvaluationPolicy | None = None,
    use_gpu: bool | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Recall@N of ``split`` from its descriptor files → (metrics dict, per-query arrays), under
    ``policy`` (None: the dataset's, :func:`icsa.evaluate.policy.policy_for`)."""
    ns = check_ns(ns)
    policy = policy_for(split.dataset, split=split) if policy is None else policy
    rules = policy.retrieval_rules(split)  # before the descriptors load: an error is cheap
    t0 = time.perf_counter()
    db, q = load_pair(split, db_path, q_path)
    descriptor_dim = int(db.shape[1])
    t_load = time.perf_counter()
    if pca_path is not None:
        db, q = whiten_pair(pca_path, db, q, db_path)
    t_pca = time.perf_counter()
    result = retrieve(
        db, q, split.db.db_utm, split.db.q_utm, max(ns), threshold, **rules,
        memory_budget_mb=memory_budget_mb, use_gpu=use_gpu, progress=True,
    )  # fmt: skip
    t_search = time.perf_counter()
    metrics = {
        "model": model_id,
        "dataset": split.dataset,
        "split": split.split,
        "num_db": int(split.db.num_db),
        "num_q": int(split.db.num_q),
        "dim": int(db.shape[1]),
        "descriptor_dim": descriptor_dim,
        "pca": None if pca_path is None else str(pca_path),
        "threshold": float(threshold),
        **policy.metrics_fields(),
        "recalls": {str(n): r for n, r in result.recalls(ns).items()},
        "found": {str(n): result.found(n) for n in ns},
        "queries_without_positive": int(np.count_nonzero(result.num_positives == 0)),
        "timings": {
            "load_s": round(t_load - t0, 4),
            "pca_s": round(t_pca - t_load, 4),
            "search_s": round(t_search - t_pca, 4),
            "total_s": round(t_search - t0, 4),
        },
    }
    if split.q_groups is not None:
        metrics["per_city"] = per_group(result.first_hit_rank, split.q_groups, ns)
    perquery = {
        "indices": result.indices,
        "distances": result.distances,
        "first_hit_rank": result.first_hit_rank,
    }
    return metrics, perquery


def write_results(
    metrics: dict[str, Any],
    perquery: dict[str, np.ndarray],
    out_metrics: str | os.PathLike,
    out_perquery: str | os.PathLike | None,
) -> None:
    """Write the metrics JSON and (optionally) the per-query ``.npz``, each atomically."""
    if out_perquery is not None:
        with atomic_path(out_perquery) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **perquery)
    write_json(out_metrics, metrics)
