"""Evaluate one split from descriptor files: metrics JSON and per-query results.

The metrics JSON and the per-query ``.npz`` are the contract in docs/architecture.md
("Evaluation"): recalls and found counts per N, queries without any positive, descriptor dims
and timings; per query the top-k ``indices``/``distances`` and ``first_hit_rank`` (−1 = none in
the top-k), from which the tables' paired intervals recompute Found@N.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icsa.data import PlaceSplit
from icsa.data.layouts import TIME_MACHINE_DATASETS
from icsa.errors import InputError
from icsa.evaluate.memmap import read_rows
from icsa.evaluate.pca import PCAWhitening
from icsa.evaluate.recall import RECALL_VALUES, TIME_RULE, check_ns, panorama_groups, retrieve
from icsa.io import atomic_path, write_json


def count_nonfinite(arr: np.ndarray, chunk_rows: int = 4096) -> int:
    """Rows of ``arr`` holding NaN or inf, read block by block (memmaps stay unloaded)."""
    return sum(
        int(np.count_nonzero(~np.isfinite(read_rows(arr, s, s + chunk_rows, arr.dtype)).all(1)))
        for s in range(0, len(arr), chunk_rows)
    )


def load_descriptors(path: str | os.PathLike, expected_rows: int | None, what: str) -> np.ndarray:
    """Memory-map a descriptor ``.npy``; InputError unless it is finite [expected_rows, D]
    (any number of rows with ``expected_rows=None``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{what} descriptors {path} not found, expected a file from `icsa extract`"
        )
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise InputError(f"{what} descriptors {path}: not a numpy .npy array ({err})") from err
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
    bad = count_nonfinite(arr)
    if bad:
        raise InputError(f"{what} descriptors {path}: {bad} rows contain NaN/inf, expected none")
    return arr


# TIME_MACHINE_DATASETS: protocols defined by capture times; evaluating one without them is an
# error unless the rule is switched off explicitly (time_rule=False, --time-rule off).


def evaluate_split(
    split: PlaceSplit,
    db_path: str | os.PathLike,
    q_path: str | os.PathLike,
    model_id: str,
    ns: Sequence[int] = RECALL_VALUES,
    threshold: float = 25.0,
    pca_path: str | os.PathLike | None = None,
    memory_budget_mb: float | None = None,
    time_rule: bool | None = None,
    panorama_cutouts: int | None = None,
    use_gpu: bool | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Recall@N of ``split`` from its descriptor files → (metrics dict, per-query arrays).

    ``time_rule=None`` applies TokyoTM's rule (same-time database images leave each query's
    ranking, :func:`icsa.evaluate.recall.retrieve`) wherever the dbStruct has time stamps, and
    refuses a TokyoTM dbStruct without them; ``False`` evaluates without the rule;
    ``panorama_cutouts=None`` groups Tokyo 24/7's database in panoramas of 12 views.
    """
    ns = check_ns(ns)
    t0 = time.perf_counter()
    db = load_descriptors(db_path, split.db.num_db, "database")
    q = load_descriptors(q_path, split.db.num_q, "query")
    if db.shape[1] != q.shape[1]:
        raise InputError(
            f"descriptor dims differ: {db_path} is {db.shape[1]}-D, {q_path} is {q.shape[1]}-D; "
            "expected both from the same model"
        )
    descriptor_dim = int(db.shape[1])
    t_load = time.perf_counter()
    if pca_path is not None:
        pca = PCAWhitening.load(pca_path)
        if pca.input_dim != descriptor_dim:
            raise InputError(
                f"PCA {pca_path} was fitted on {pca.input_dim}-D descriptors, but {db_path} is "
                f"{descriptor_dim}-D; expected a PCA fitted on this model's training database"
            )
        db, q = pca.apply(db), pca.apply(q)
    t_pca = time.perf_counter()
    if time_rule is None and split.dataset in TIME_MACHINE_DATASETS and not split.db.has_timestamps:
        # Without capture times the time rule would silently fall away and a query would find
        # its own capture: R@1 33 % instead of 0 % on the same descriptors (issue 16).
        raise InputError(
            f"{split.source}: a {split.dataset} split without capture times (dbTimeStamp, "
            "qTimeStamp, or the benchmark names' timestamp field); expected them for its time "
            "rule, or evaluate with --time-rule off"
        )
    use_times = split.db.has_timestamps if time_rule is None else time_rule
    if use_times and not split.db.has_timestamps:
        raise InputError(f"{split.source}: time_rule asked for, but the dbStruct has no times")
    if panorama_cutouts is None and split.dataset == "tokyo247":
        panorama_cutouts = 12
    groups = panorama_groups(len(db), panorama_cutouts) if panorama_cutouts else None
    result = retrieve(
        db,
        q,
        split.db.db_utm,
        split.db.q_utm,
        max(ns),
        threshold,
        db_times=split.db.db_timestamps if use_times else None,
        query_times=split.db.q_timestamps if use_times else None,
        db_groups=groups,
        memory_budget_mb=memory_budget_mb,
        use_gpu=use_gpu,
        progress=True,
    )
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
        # The TokyoTM rule in force: same-time database images removed from the ranking.
        "time_rule": TIME_RULE if use_times else None,
        "panorama_cutouts": panorama_cutouts,
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
