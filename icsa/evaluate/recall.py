"""Recall@N, the NetVLAD protocol (Arandjelović et al., CVPR 2016).

A query is *found at N* when one of its N nearest database descriptors (exact L2) is a positive:
a database image within ``threshold`` metres (25 m, inclusive) of the query. The recall is the
fraction of *all* queries found, so a query without any positive counts as a miss. Two dataset
rules ride on top (the mechanisms; which dataset gets which is :mod:`icsa.evaluate.policy`):

- TokyoTM (``db_times``, ``query_times``): every database image captured at the query's own
  time is removed *from the ranking* before the 25 m test, as the MATLAB reference does
  (``dbTokyoTimeMachine.nnSearchPostprocess`` in Relja Arandjelović's netvlad: it searches
  10·N deep, drops same-time results and keeps the first N). TokyoTM's queries are images of its
  own database, so without the rule a query's same-time panorama crops fill the top ranks.
- Tokyo 24/7: each database panorama is cut into 12 views that share a place; a panorama counts
  once, at the rank of its best view (``dbTokyo247.nnSearchPostprocess`` in the netvlad
  reference), so the ranking is deduplicated by ``db_groups`` after searching deep enough to
  keep N distinct panoramas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from icsa.data import different_time, positives_within
from icsa.errors import InputError
from icsa.evaluate.search import search
from icsa.step_settings import POSITIVE_RADIUS_M, RECALL_VALUES

TOKYO247_CUTOUTS = 12
# The reference's first search depth per wanted result under the time rule ("roughly up to 5
# panoramas at different times per location, so a very conservative estimate").
TIME_RULE_DEPTH_FACTOR = 10
TIME_RULE = "drop-same-time"  # how metrics files name the rule


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


def drop_same_time(
    indices: np.ndarray,
    distances: np.ndarray,
    db_times: np.ndarray,
    query_times: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove from each row the database images captured at its query's time (order kept).

    Rows are compacted to the left and padded with −1 / +inf, so row width is unchanged.
    """
    valid = indices >= 0
    same = valid & (np.asarray(db_times)[np.where(valid, indices, 0)] == query_times[:, None])
    keep = valid & ~same
    # A stable sort on "dropped" moves the kept entries left in their original order.
    order = np.argsort(~keep, axis=1, kind="stable")
    out_i = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(indices, order, 1), -1)
    out_d = np.where(
        np.take_along_axis(keep, order, 1), np.take_along_axis(distances, order, 1), np.inf
    )
    return out_i.astype(np.int64), out_d.astype(np.float32)


def _filtered_ranking(
    db: np.ndarray,
    queries: np.ndarray,
    k: int,
    depth: int,
    db_times: np.ndarray | None,
    query_times: np.ndarray | None,
    group_ids: np.ndarray | None,
    search_kwargs: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each query after the dataset's filters (time rule, then panorama dedup).

    Searches ``depth`` deep; a query whose filtered list is shorter than k while deeper database
    rows exist is searched again four times deeper (repeatedly), so the result is exactly the
    first k entries of the filtered full ranking.
    """
    num_db = len(db)
    if group_ids is None:
        k = min(k, num_db)  # as search(): a row is never wider than the database
    out_i = np.full((len(queries), k), -1, dtype=np.int64)
    out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    todo = np.arange(len(queries))
    while len(todo):
        depth = min(depth, num_db)
        subset = queries if len(todo) == len(queries) else queries[todo]
        distances, indices = search(db, subset, depth, **search_kwargs)
        if db_times is not None:
            indices, distances = drop_same_time(indices, distances, db_times, query_times[todo])
        if group_ids is not None:
            indices, distances = dedup_by_group(indices, distances, group_ids, k)
        width = min(k, indices.shape[1])
        out_i[todo, :width], out_d[todo, :width] = indices[:, :width], distances[:, :width]
        short = (indices[:, :width] >= 0).sum(axis=1) < k
        if depth >= num_db or not short.any():
            break
        todo, depth = todo[short], depth * 4
    return out_i, out_d


def retrieve(
    db_descriptors: np.ndarray,
    query_descriptors: np.ndarray,
    db_utm: np.ndarray,
    query_utm: np.ndarray,
    k: int = max(RECALL_VALUES),
    threshold: float = POSITIVE_RADIUS_M,
    db_times: np.ndarray | None = None,
    query_times: np.ndarray | None = None,
    db_groups: np.ndarray | None = None,
    *,
    positives: Sequence[np.ndarray] | None = None,
    **search_kwargs,
) -> Retrieval:
    """Search the top-k of every query and locate its first positive under the dataset's rules.

    With ``db_times``/``query_times`` (TokyoTM) same-time database images leave the ranking.
    The first search is ``TIME_RULE_DEPTH_FACTOR`` × k deep, as the reference's; unlike the
    reference (which then returns fewer than k results), a query left with fewer than k
    other-time results is searched deeper until k remain or the database is exhausted, so the
    result equals the reference's whenever 10·k was deep enough and is exact otherwise.
    With ``db_groups`` (Tokyo 24/7) k distinct groups are certainly among the k × (largest
    group) nearest rows, which is the first depth.
    With ``positives`` (one array of database indices per query: a dataset's own ground truth,
    icsa.data.ground_truth) those lists replace the ``threshold`` radius around the UTM.
    """
    num_db, num_q = len(db_descriptors), len(query_descriptors)
    _rows(db_utm, num_db, "db_utm")
    _rows(query_utm, num_q, "query_utm")
    _rows(db_times, num_db, "db_times")
    _rows(query_times, num_q, "query_times")
    _rows(db_groups, num_db, "db_groups")
    _rows(positives, num_q, "positives")
    if (db_times is None) != (query_times is None):
        raise InputError("db_times and query_times: got one of them, expected both or neither")
    if num_q == 0 or num_db == 0:
        raise InputError(f"{num_db} database and {num_q} query descriptors; expected at least 1")
    depth, group_ids = k, None
    if db_groups is not None:
        _, group_ids = np.unique(np.asarray(db_groups), return_inverse=True)
        group_ids = group_ids.ravel()
        depth = k * int(np.bincount(group_ids).max())
    if db_times is not None:
        db_times = np.asarray(db_times).ravel()
        query_times = np.asarray(query_times).ravel()
        depth *= TIME_RULE_DEPTH_FACTOR
    indices, distances = _filtered_ranking(
        db_descriptors, query_descriptors, k, depth, db_times, query_times, group_ids,
        search_kwargs,
    )  # fmt: skip
    if positives is None:
        positives = positives_within(db_utm, query_utm, threshold)
    else:
        positives = [np.asarray(p, dtype=np.int64).ravel() for p in positives]
        # first_hit_ranks keys pairs as query·num_db + index: an index out of range would match
        # another query's row.
        bad = [q for q, p in enumerate(positives) if p.size and (p.min() < 0 or p.max() >= num_db)]
        if bad:
            raise InputError(
                f"positives of query {bad[0]}: {positives[bad[0]].tolist()}, expected database "
                f"indices in [0, {num_db})"
            )
    if db_times is not None:
        # Same-time images are no longer ranked; counting them as positives would only inflate
        # num_positives for queries whose every neighbour shares their time.
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
    threshold: float = POSITIVE_RADIUS_M,
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
