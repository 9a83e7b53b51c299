"""Recall@N, the NetVLAD protocol (Arandjelović et al., CVPR 2016).

A query is *found at N* when one of its N nearest database descriptors (exact L2) is a positive:
a database image within ``threshold`` metres (25 m, inclusive) of the query. The recall is the
fraction of *all* queries found, so a query without any positive counts as a miss. Two dataset
rules ride on top:

- TokyoTM: a positive must also have another capture time than the query (``db_times``,
  ``query_times``); same-time images stay in the ranking, as non-positives.
- Tokyo 24/7: each database panorama is cut into 12 views that share a place; a panorama counts
  once, at the rank of its best view (NetVLAD's ``nnSearchPostprocess``), so the ranking is
  deduplicated by ``db_groups`` after searching deep enough to keep N distinct panoramas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from icsa.data import different_time, positives_within
from icsa.errors import InputError
from icsa.evaluate.search import search

RECALL_VALUES = (1, 5, 10, 20)
TOKYO247_CUTOUTS = 12


@dataclass(frozen=True)
class Retrieval:
    """Per-query results: the (deduplicated) top-k and the rank of the first positive (−1)."""

    indices: np.ndarray  # [M, k] int64, −1 where fewer than k results exist
    distances: np.ndarray  # [M, k] float32 squared L2, +inf where empty
    first_hit_rank: np.ndarray  # [M] int64
    num_positives: np.ndarray  # [M] int64: positives of each query under the rules in force

    def found(self, n: int) -> int:
        return int(np.count_nonzero((self.first_hit_rank >= 0) & (self.first_hit_rank < n)))

    def recalls(self, ns: Sequence[int]) -> dict[int, float]:
        return {int(n): self.found(n) / len(self.first_hit_rank) for n in ns}


def panorama_groups(num_db: int, cutouts: int = TOKYO247_CUTOUTS) -> np.ndarray:
    """Tokyo 24/7's panorama of each database image: ``cutouts`` consecutive views per panorama."""
    return np.arange(num_db, dtype=np.int64) // cutouts


def check_ns(ns: Sequence[int]) -> tuple[int, ...]:
    values = tuple(int(n) for n in ns)
    if not values or min(values) < 1:
        raise InputError(f"ns = {list(ns)}, expected one or more positive integers like 1 5 10 20")
    return tuple(sorted(set(values)))


def dedup_by_group(
    indices: np.ndarray, distances: np.ndarray, groups: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep each row's first entry of every group (its best-ranked view), then the top k."""
    out_i = np.full((len(indices), k), -1, dtype=np.int64)
    out_d = np.full((len(indices), k), np.inf, dtype=np.float32)
    for row, (idx, dist) in enumerate(zip(indices, distances)):
        valid = idx >= 0
        _, first = np.unique(groups[idx[valid]], return_index=True)
        keep = np.sort(first)[:k]
        out_i[row, : len(keep)] = idx[valid][keep]
        out_d[row, : len(keep)] = dist[valid][keep]
    return out_i, out_d


def first_hit_ranks(indices: np.ndarray, positives: list[np.ndarray], num_db: int) -> np.ndarray:
    """Rank of the first positive in each row of ``indices`` (−1 when none is in the top-k)."""
    counts = np.array([len(p) for p in positives], dtype=np.int64)
    # One isin over (query, db) pair keys instead of a Python loop over queries.
    pos_keys = np.repeat(np.arange(len(positives), dtype=np.int64), counts) * num_db
    if counts.sum():
        pos_keys = pos_keys + np.concatenate(positives).astype(np.int64)
    row_keys = np.arange(len(indices), dtype=np.int64)[:, None] * num_db + indices
    hit = np.isin(row_keys, pos_keys) & (indices >= 0)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1).astype(np.int64)


def _rows(arr: np.ndarray | None, expected: int, name: str) -> None:
    if arr is not None and len(arr) != expected:
        raise InputError(f"{name}: {len(arr)} rows, expected {expected} (one per descriptor)")


def retrieve(
    db_descriptors: np.ndarray,
    query_descriptors: np.ndarray,
    db_utm: np.ndarray,
    query_utm: np.ndarray,
    k: int = max(RECALL_VALUES),
    threshold: float = 25.0,
    db_times: np.ndarray | None = None,
    query_times: np.ndarray | None = None,
    db_groups: np.ndarray | None = None,
    **search_kwargs,
) -> Retrieval:
    """Search the top-k of every query and locate its first positive under the dataset's rules."""
    num_db, num_q = len(db_descriptors), len(query_descriptors)
    _rows(db_utm, num_db, "db_utm")
    _rows(query_utm, num_q, "query_utm")
    _rows(db_times, num_db, "db_times")
    _rows(query_times, num_q, "query_times")
    _rows(db_groups, num_db, "db_groups")
    if (db_times is None) != (query_times is None):
        raise InputError("db_times and query_times: got one of them, expected both or neither")
    if num_q == 0 or num_db == 0:
        raise InputError(f"{num_db} database and {num_q} query descriptors; expected at least 1")
    depth = k
    if db_groups is not None:
        _, group_ids = np.unique(np.asarray(db_groups), return_inverse=True)
        group_ids = group_ids.ravel()
        # k distinct groups are certainly among the k × (largest group) nearest rows.
        depth = k * int(np.bincount(group_ids).max())
    distances, indices = search(db_descriptors, query_descriptors, depth, **search_kwargs)
    if db_groups is not None:
        indices, distances = dedup_by_group(indices, distances, group_ids, k)
    positives = positives_within(db_utm, query_utm, threshold)
    if db_times is not None:
        positives = different_time(positives, db_times, query_times)
    ranks = first_hit_ranks(indices, positives, num_db)
    num_pos = np.array([len(p) for p in positives], dtype=np.int64)
    return Retrieval(indices, distances, ranks, num_pos)


def recall_at_n(
    db_descriptors: np.ndarray,
    query_descriptors: np.ndarray,
    db_utm: np.ndarray,
    query_utm: np.ndarray,
    ns: Sequence[int] = RECALL_VALUES,
    threshold: float = 25.0,
    *,
    db_times: np.ndarray | None = None,
    query_times: np.ndarray | None = None,
    db_groups: np.ndarray | None = None,
    **search_kwargs,
) -> dict[int, float]:
    """Recall@N for each N in ``ns`` as fractions of all queries (no positive = a miss).

    ``search_kwargs`` go to :func:`icsa.evaluate.search.search` (shards, memory budget).
    """
    ns = check_ns(ns)
    result = retrieve(
        db_descriptors,
        query_descriptors,
        db_utm,
        query_utm,
        max(ns),
        threshold,
        db_times,
        query_times,
        db_groups,
        **search_kwargs,
    )
    return result.recalls(ns)
