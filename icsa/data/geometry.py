"""Place geometry: which database images count as the same place as a query.

NetVLAD (Arandjelović et al., CVPR 2016) calls a database image a positive when it lies within
``posDistThr`` = 25 m of the query (inclusive, as sklearn's ``radius_neighbors``), trains on the
*non-trivial* positives within ``sqrt(nonTrivPosDistSqThr)`` = 10 m, and samples negatives from
images farther than 25 m. On TokyoTM a positive must also come from another capture time, so the
network cannot match a query to a frame of the same drive.

Everything is vectorised around one KD-tree query, so Pitts250k (250k database × 24k queries)
takes seconds (see ``benchmarks/bench_geometry.py``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from icsa.data.dbstruct import DbStruct
from icsa.data.layouts import PlaceSplit
from icsa.errors import InputError

# The tree searches a hair wider than asked and the exact squared-distance test decides, so
# points exactly at the radius are in and points beyond it are out whatever the tree rounds.
_SLACK = 1e-7


def _points(utm: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(utm, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"{name}: shape {arr.shape}, expected [N, 2] (easting, northing)")
    return arr


def positives_within(
    db_utm: np.ndarray, q_utm: np.ndarray, radius: float, workers: int = 1
) -> list[np.ndarray]:
    """For each query, the sorted int64 indices of database points within ``radius`` (inclusive).

    A point counts when ``dx*dx + dy*dy <= radius*radius`` in float64.
    """
    db = _points(db_utm, "db_utm")
    q = _points(q_utm, "q_utm")
    if not np.isfinite(radius) or radius < 0:
        raise InputError(f"radius = {radius}, expected a finite non-negative distance in metres")
    if len(db) == 0 or len(q) == 0:
        return [np.empty(0, dtype=np.int64) for _ in range(len(q))]
    tree = cKDTree(db)
    found = tree.query_ball_point(
        q, r=radius * (1 + _SLACK) + _SLACK, workers=workers, return_sorted=True
    )
    # Flatten the ragged lists once, filter with the exact test in one numpy pass, split back.
    counts = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
    flat = np.fromiter((i for f in found for i in f), dtype=np.int64, count=int(counts.sum()))
    owner = np.repeat(np.arange(len(q)), counts)
    diff = db[flat] - q[owner]
    keep = (diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1]) <= radius * radius
    kept_counts = np.bincount(owner[keep], minlength=len(q))
    return np.split(flat[keep], np.cumsum(kept_counts)[:-1])


def different_time(
    positives: list[np.ndarray], db_timestamps: np.ndarray, q_timestamps: np.ndarray
) -> list[np.ndarray]:
    """TokyoTM's rule: keep only the positives captured at another time than their query."""
    db_t = np.asarray(db_timestamps).ravel()
    q_t = np.asarray(q_timestamps).ravel()
    if len(q_t) != len(positives):
        raise InputError(
            f"q_timestamps: {len(q_t)} entries, expected one per query ({len(positives)})"
        )
    return [pos[db_t[pos] != q_t[i]] for i, pos in enumerate(positives)]


def _apply_time_rule(db: DbStruct, positives: list[np.ndarray]) -> list[np.ndarray]:
    if db.db_timestamps is None or db.q_timestamps is None:
        return positives
    return different_time(positives, db.db_timestamps, db.q_timestamps)


def eval_positives(
    db: DbStruct | PlaceSplit, time_rule: bool = True, workers: int = 1
) -> list[np.ndarray]:
    """Positives within ``posDistThr`` (25 m); the time rule applies where time stamps exist."""
    db = db.db if isinstance(db, PlaceSplit) else db
    pos = positives_within(db.db_utm, db.q_utm, db.pos_dist_thr, workers=workers)
    return _apply_time_rule(db, pos) if time_rule else pos


def training_positives(
    db: DbStruct | PlaceSplit, time_rule: bool = True, workers: int = 1
) -> list[np.ndarray]:
    """Non-trivial positives within ``sqrt(nonTrivPosDistSqThr)`` (10 m), time rule included."""
    db = db.db if isinstance(db, PlaceSplit) else db
    radius = float(np.sqrt(db.non_triv_pos_dist_sq_thr))
    pos = positives_within(db.db_utm, db.q_utm, radius, workers=workers)
    return _apply_time_rule(db, pos) if time_rule else pos


def potential_negatives(
    db_utm: np.ndarray, q_utm: np.ndarray, radius: float = 25.0, workers: int = 1
) -> list[np.ndarray]:
    """For each query, the sorted database indices *farther* than ``radius`` (25 m).

    Memory is num_q × num_db indices: fine for training splits (Pitts30k-train: 10k × 7k);
    at Pitts250k scale the miner samples instead (icsa.train.mining.sample_negatives).
    """
    num_db = len(_points(db_utm, "db_utm"))
    near = positives_within(db_utm, q_utm, radius, workers=workers)
    everything = np.arange(num_db, dtype=np.int64)
    # ``near`` is sorted and unique, so a boolean mask beats setdiff1d's sort.
    out = []
    for idx in near:
        mask = np.ones(num_db, dtype=bool)
        mask[idx] = False
        out.append(everything[mask])
    return out
