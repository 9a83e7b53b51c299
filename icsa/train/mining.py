"""Weakly supervised triplet mining on cached descriptors (NetVLAD / pytorch-NetVlad recipe).

For a training query q:
- positive: among database images within ``pos_radius`` (10 m, "non-trivial" positives) the one
  nearest to q in descriptor space; queries without any are dropped from training and counted;
- negatives: ``neg_samples`` database images drawn (with replacement, as ``np.random.choice``)
  from those strictly beyond ``neg_radius`` (25 m), merged with q's hard negatives of its previous
  visit; of these the ``neg_kept`` nearest that violate the margin
  (``d(q, n) < d(q, p) + margin``) are kept and remembered. A query with no violator is skipped.

``HardNegativeMiner.mine`` is the per-query reference on numpy arrays, testable without a model;
``mine_batch`` (what training runs) mines a step's queries at once on the descriptor cache where
it lives (the training device): one gather and one distance pass for all their positives and
candidates, one transfer of the distances to the host. Both draw the same negatives from the same
generator in the same order and make the same choices (tests/test_mining.py); they can differ
only where two distances are within float32 rounding of each other, because torch and numpy sum
the squares in different orders. Randomness comes only from the ``np.random.Generator`` passed
in, which makes the order reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from icsa.data import different_time, positives_within
from icsa.errors import InputError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TripletGeometry:
    """Which database images may serve as positives / must not serve as negatives, per query."""

    positives: list[np.ndarray]  # per query: db indices within pos_radius (sorted)
    near: list[np.ndarray]  # per query: db indices within neg_radius (never negatives)
    num_db: int

    @property
    def trainable_queries(self) -> np.ndarray:
        """Indices of queries with at least one positive and at least one possible negative."""
        keep = [
            q
            for q, (pos, near) in enumerate(zip(self.positives, self.near))
            if len(pos) > 0 and len(near) < self.num_db
        ]
        return np.asarray(keep, dtype=np.int64)

    @property
    def queries_without_positive(self) -> int:
        return sum(1 for pos in self.positives if len(pos) == 0)


def build_geometry(
    db_utm: np.ndarray,
    q_utm: np.ndarray,
    pos_radius: float,
    neg_radius: float,
    db_timestamps: np.ndarray | None = None,
    q_timestamps: np.ndarray | None = None,
) -> TripletGeometry:
    """Positive and exclusion sets from UTM positions.

    With capture times (TokyoTM) a positive must come from another capture time than the query,
    so that the network cannot learn to match an image with its own time-machine twin.
    """
    positives = positives_within(db_utm, q_utm, pos_radius)
    near = positives_within(db_utm, q_utm, neg_radius)
    if db_timestamps is not None and q_timestamps is not None:
        positives = different_time(positives, db_timestamps, q_timestamps)
    return TripletGeometry(
        positives=[np.asarray(p, dtype=np.int64) for p in positives],
        near=[np.asarray(n, dtype=np.int64) for n in near],
        num_db=int(len(db_utm)),
    )


def require_trainable(
    geometry: TripletGeometry, split: str, pos_radius: float, neg_radius: float
) -> None:
    """InputError naming ``split`` (its file and name) when no query can be trained on.

    Without one every epoch runs 0 steps, and the untrained model would be saved as the best
    epoch of a run that exits 0.
    """
    if len(geometry.trainable_queries) > 0:
        return
    num_q = len(geometry.positives)
    with_positive = num_q - geometry.queries_without_positive
    raise InputError(
        f"{split}: no trainable query ({num_q} queries, {with_positive} with a database image "
        f"within train.pos_radius = {pos_radius:g} m, 0 of those with one beyond "
        f"train.neg_radius = {neg_radius:g} m); expected queries with a positive and a negative"
    )


@dataclass(frozen=True)
class MinedTriplet:
    query: int
    positive: int  # db index
    negatives: np.ndarray  # db indices, nearest first, 1..neg_kept of them


def sample_negatives(
    near: np.ndarray, num_db: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` draws with replacement from the db indices not in ``near``.

    Rejection sampling instead of materialising the complement: at Pitts250k scale the
    complement lists of all queries would take gigabytes.
    """
    if len(near) >= num_db:
        return np.empty(0, dtype=np.int64)
    out: list[np.ndarray] = []
    need = count
    while need > 0:
        draw = rng.integers(0, num_db, size=need)
        draw = draw[~np.isin(draw, near)]
        out.append(draw)
        need -= len(draw)
    return np.concatenate(out).astype(np.int64)


class HardNegativeMiner:
    """Mines triplets and remembers each query's last hard negatives (its negative cache)."""

    def __init__(self, geometry: TripletGeometry, margin: float, neg_samples: int, neg_kept: int):
        self.geometry = geometry
        self.margin = float(margin)
        self.neg_samples = int(neg_samples)
        self.neg_kept = int(neg_kept)
        # -1 pads unused slots; kept as one int array so it checkpoints as a single tensor.
        self.neg_cache = np.full((len(geometry.positives), neg_kept), -1, dtype=np.int64)

    def mine(
        self,
        query: int,
        query_descriptor: np.ndarray,
        db_descriptors: np.ndarray,
        rng: np.random.Generator,
    ) -> MinedTriplet | None:
        """One query's triplet from the descriptor cache, or None when no negative violates."""
        q = np.asarray(query_descriptor, dtype=np.float32)
        pos = self.geometry.positives[query]
        if len(pos) == 0:
            return None
        d_pos = np.linalg.norm(db_descriptors[pos].astype(np.float32) - q, axis=1)
        candidates = self._candidates(query, rng)
        if len(candidates) == 0:
            return None
        d_neg = np.linalg.norm(db_descriptors[candidates].astype(np.float32) - q, axis=1)
        return self._choose(query, pos, d_pos, candidates, d_neg)

    def _candidates(self, query: int, rng: np.random.Generator) -> np.ndarray:
        """The query's negative candidates: ``neg_samples`` fresh draws merged with its hard
        negatives of the previous visit (sorted, unique)."""
        sampled = sample_negatives(
            self.geometry.near[query], self.geometry.num_db, self.neg_samples, rng
        )
        previous = self.neg_cache[query]
        return np.unique(np.concatenate([previous[previous >= 0], sampled]))

    def _choose(
        self, query: int, pos: np.ndarray, d_pos: np.ndarray, cand: np.ndarray, d_neg: np.ndarray
    ) -> MinedTriplet | None:
        """The positive nearest in descriptor space, and the nearest margin violators among the
        candidates (``mine``'s choice, given the distances); updates the negative cache."""
        best = int(np.argmin(d_pos))
        positive, d_positive = int(pos[best]), float(d_pos[best])
        order = np.argsort(d_neg, kind="stable")
        # Sorted ascending, so the violators are a prefix: keep the first neg_kept of them.
        violating = order[d_neg[order] < d_positive + self.margin][: self.neg_kept]
        if len(violating) == 0:
            return None
        negatives = cand[violating]
        self.neg_cache[query] = -1
        self.neg_cache[query, : len(negatives)] = negatives
        return MinedTriplet(query=int(query), positive=positive, negatives=negatives)

    def mine_batch(
        self,
        queries: Sequence[int],
        query_descriptors: torch.Tensor,
        db_descriptors: torch.Tensor,
        rng: np.random.Generator,
    ) -> list[MinedTriplet | None]:
        """``mine`` for each of ``queries`` (rows of ``query_descriptors`` [B, D]) against the
        database cache [N, D], both torch tensors on one device; the distances of all the
        queries' positives and candidates computed there, with no host round trip between
        queries."""
        import torch

        if len(set(queries)) != len(queries):
            # mine() updates a query's negative cache before its next visit; one batch cannot.
            raise ValueError(f"mine_batch: queries {list(queries)} repeat; expected distinct")
        pos_lists, cand_lists = [], []
        for query in queries:  # draws in mine's order: a query without positives draws none
            pos = self.geometry.positives[query]
            empty = np.empty(0, dtype=np.int64)
            cand = self._candidates(query, rng) if len(pos) > 0 else empty
            pos_lists.append(pos)
            cand_lists.append(cand)
        # Per query on the device (a [1 + C, D] gather at a time, as ``mine``'s peak memory),
        # then one transfer of all the distances to the host.
        device = db_descriptors.device
        dists = []
        for i, (pos, cand) in enumerate(zip(pos_lists, cand_lists)):
            rows = torch.from_numpy(np.concatenate([pos, cand])).to(device)
            diff = db_descriptors[rows].float() - query_descriptors[i].float()
            dists.append(torch.linalg.vector_norm(diff, dim=1))
        dist = torch.cat(dists).cpu().numpy() if dists else np.empty(0, np.float32)
        sizes = [n for p, c in zip(pos_lists, cand_lists) for n in (len(p), len(c))]
        bounds = np.cumsum([0, *sizes])
        out: list[MinedTriplet | None] = []
        for i, query in enumerate(queries):
            pos, cand = pos_lists[i], cand_lists[i]
            if len(pos) == 0 or len(cand) == 0:
                out.append(None)
                continue
            d_pos = dist[bounds[2 * i] : bounds[2 * i + 1]]
            d_neg = dist[bounds[2 * i + 1] : bounds[2 * i + 2]]
            out.append(self._choose(int(query), pos, d_pos, cand, d_neg))
        return out
