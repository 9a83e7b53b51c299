"""Recall@N against a brute-force numpy reference (full distance matrix, explicit loops)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from icsa.errors import InputError
from icsa.evaluate import RECALL_VALUES, panorama_groups, recall_at_n, retrieve

NUM_Q, NUM_NO_POS = 40, 10


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def reference(db, q, db_utm, q_utm, ns, thr, db_times=None, q_times=None, groups=None):
    """Recall@N the slow, obvious way; returns ({n: recall}, first-hit ranks)."""
    dist = ((q.astype(np.float64)[:, None] - db.astype(np.float64)[None]) ** 2).sum(-1)
    found = dict.fromkeys(ns, 0)
    ranks = []
    for i in range(len(q)):
        ranking = sorted(range(len(db)), key=lambda j: (dist[i, j], j))
        if db_times is not None:  # TokyoTM: same-time images leave the ranking
            ranking = [j for j in ranking if db_times[j] != q_times[i]]
        if groups is not None:
            seen, deduped = set(), []
            for j in ranking:
                if groups[j] not in seen:
                    seen.add(groups[j])
                    deduped.append(j)
            ranking = deduped
        positives = set()
        for j in range(len(db)):
            dx, dy = db_utm[j] - q_utm[i]
            if dx * dx + dy * dy <= thr * thr and (db_times is None or db_times[j] != q_times[i]):
                positives.add(j)
        hits = [r for r, j in enumerate(ranking[: max(ns)]) if j in positives]
        ranks.append(hits[0] if hits else -1)
        for n in ns:
            if any(j in positives for j in ranking[:n]):
                found[n] += 1
    return {n: found[n] / len(q) for n in ns}, np.array(ranks)


def make_city(seed: int = 0):
    """Queries 1 km apart; near each of the first 30, database images at exactly 25 m, at 26 m
    and at 5 m (integer offsets, exact in float64); the last 10 queries have no positive."""
    rng = np.random.default_rng(seed)
    q_utm = np.stack([np.arange(NUM_Q) * 1000.0, np.full(NUM_Q, 5000.0)], axis=1)
    offsets = [(15, 20), (-25, 0), (7, -24), (10, 24), (-26, 0), (3, 4)]  # 25, 25, 25, 26, 26, 5
    db_utm, owner = [], []
    for i in range(NUM_Q - NUM_NO_POS):
        for k in rng.choice(len(offsets), size=3, replace=False):
            db_utm.append(q_utm[i] + offsets[k])
            owner.append(i)
    far = rng.integers(0, 10**6, size=(40, 2)) + 10**7  # distractors far from every query
    db_utm = np.concatenate([np.array(db_utm), far]).astype(np.float64)
    db = rng.standard_normal((len(db_utm), 8)).astype(np.float32)
    # Each query looks like one database image: often one exactly at the threshold.
    target = [rng.choice(np.flatnonzero(np.array(owner) == i)) for i in range(NUM_Q - NUM_NO_POS)]
    target += list(rng.integers(0, len(db), size=NUM_NO_POS))
    q = (db[target] + 0.6 * rng.standard_normal((NUM_Q, 8))).astype(np.float32)
    return db, q, db_utm, q_utm


def test_recall_matches_brute_force_including_threshold_and_no_positive():
    db, q, db_utm, q_utm = make_city()
    ref, ref_ranks = reference(db, q, db_utm, q_utm, RECALL_VALUES, 25.0)
    got = recall_at_n(db, q, db_utm, q_utm)
    assert got == pytest.approx(ref, abs=0)
    result = retrieve(db, q, db_utm, q_utm, k=20)
    assert np.array_equal(result.first_hit_rank, ref_ranks)
    assert int((result.num_positives == 0).sum()) == NUM_NO_POS
    # The 10 queries without positives are misses in the denominator.
    assert got[20] <= (NUM_Q - NUM_NO_POS) / NUM_Q
    # The data exercise the boundary: excluding the 25 m images changes the answer.
    strict, _ = reference(db, q, db_utm, q_utm, RECALL_VALUES, 24.999)
    assert strict != ref


def test_recall_time_rule_matches_reference():
    db, q, db_utm, q_utm = make_city(1)
    rng = np.random.default_rng(5)
    db_times = rng.integers(0, 2, size=len(db))
    q_times = rng.integers(0, 2, size=len(q))
    ref, _ = reference(db, q, db_utm, q_utm, RECALL_VALUES, 25.0, db_times, q_times)
    got = recall_at_n(db, q, db_utm, q_utm, db_times=db_times, query_times=q_times)
    assert got == pytest.approx(ref, abs=0)
    assert got != recall_at_n(db, q, db_utm, q_utm)  # the rule changed the answer
    result = retrieve(db, q, db_utm, q_utm, k=20, db_times=db_times, query_times=q_times)
    for i, row in enumerate(result.indices):  # no same-time image is ranked at all
        assert not np.any(db_times[row[row >= 0]] == q_times[i])


def time_machine(places: int = 12, times: int = 4, seed: int = 0):
    """Every query is itself a database image: ``places`` places × ``times`` capture times, one
    database image per (place, time) a few metres apart; each query copies the image of its
    place at one time. Per place, the other-time images are much nearer in descriptor space than
    any other place's."""
    rng = np.random.default_rng(seed)
    base = 10.0 * rng.standard_normal((places, 16))
    db = np.repeat(base, times, axis=0) + rng.standard_normal((places * times, 16))
    db_utm = np.repeat(np.arange(places) * 500.0, times)[:, None] + np.zeros((1, 2))
    db_utm[:, 1] += np.tile(np.arange(times) * 3.0, places)  # 0..9 m apart, one place
    db_times = np.tile(np.array([2008, 2010, 2012, 2014]), places)
    own = np.arange(places) * times + rng.integers(0, times, size=places)
    return (db.astype(np.float32), db[own].astype(np.float32), db_utm, db_utm[own].copy(),
            db_times, db_times[own].copy())  # fmt: skip


def loop_recall_at_1(db, q, db_utm, q_utm, db_times, q_times, drop_same_time):
    """Recall@1 by walking each query's full ranking: skip same-time images (the reference) or
    keep them as non-positives (the old icsa rule)."""
    found = 0
    for i in range(len(q)):
        dist = ((db.astype(np.float64) - q[i].astype(np.float64)) ** 2).sum(1)
        for j in sorted(range(len(db)), key=lambda j: (dist[j], j)):
            same_time = db_times[j] == q_times[i]
            if same_time and drop_same_time:
                continue
            near = np.hypot(*(db_utm[j] - q_utm[i])) <= 25.0
            found += int(near and not same_time)
            break
    return found / len(q)


def test_time_rule_when_every_query_is_a_database_image():
    db, q, db_utm, q_utm, db_times, q_times = time_machine()
    expected = loop_recall_at_1(db, q, db_utm, q_utm, db_times, q_times, drop_same_time=True)
    assert expected == 1.0  # the other-time image of the same place is nearest
    got = recall_at_n(db, q, db_utm, q_utm, ns=(1, 5), db_times=db_times, query_times=q_times)
    assert got[1] == expected and got[5] == 1.0
    # Keeping the query's own same-time image as a non-positive would give 0: the rule decides.
    assert loop_recall_at_1(db, q, db_utm, q_utm, db_times, q_times, drop_same_time=False) == 0.0


def test_time_rule_searches_deeper_than_the_reference_depth_when_needed():
    """300 same-time images are nearer than any other-time one: 10·k = 200 is not deep enough,
    and the result must still equal the full ranking filtered by the rule."""
    rng = np.random.default_rng(7)
    q = rng.standard_normal((3, 8)).astype(np.float32)
    crowd = (np.repeat(q, 100, axis=0) + 0.01 * rng.standard_normal((300, 8))).astype(np.float32)
    others = (q[rng.integers(0, 3, 60)] + 0.5 + rng.standard_normal((60, 8))).astype(np.float32)
    db = np.concatenate([crowd, others])
    db_times = np.concatenate([np.zeros(300), np.ones(60)])
    q_times = np.zeros(3)
    db_utm = rng.uniform(0, 60, size=(len(db), 2))
    q_utm = rng.uniform(0, 60, size=(3, 2))
    ref, ref_ranks = reference(db, q, db_utm, q_utm, RECALL_VALUES, 25.0, db_times, q_times)
    result = retrieve(db, q, db_utm, q_utm, k=20, db_times=db_times, query_times=q_times)
    assert result.recalls(RECALL_VALUES) == pytest.approx(ref, abs=0)
    assert np.array_equal(result.first_hit_rank, ref_ranks)
    assert (result.indices >= 300).all()  # 20 other-time results per query, none same-time


def test_recall_panorama_groups_match_reference():
    db, q, db_utm, q_utm = make_city(2)
    groups = panorama_groups(len(db), 4)
    ns = (1, 2, 5, 10, 20)
    ref, ref_ranks = reference(db, q, db_utm, q_utm, ns, 25.0, groups=groups)
    got = recall_at_n(db, q, db_utm, q_utm, ns, db_groups=groups)
    assert got == pytest.approx(ref, abs=0)
    result = retrieve(db, q, db_utm, q_utm, k=20, db_groups=groups)
    assert np.array_equal(result.first_hit_rank, ref_ranks)
    for row in result.indices:  # one entry per group, best view first
        assert len(set(groups[row[row >= 0]])) == (row >= 0).sum()


def test_recall_sharded_equals_unsharded():
    db, q, db_utm, q_utm = make_city(3)
    whole = recall_at_n(db, q, db_utm, q_utm)
    assert recall_at_n(db, q, db_utm, q_utm, shard_rows=1, tile_rows=16, query_tile=8) == whole


def test_recall_bad_inputs():
    db, q, db_utm, q_utm = make_city()
    with pytest.raises(InputError, match="db_utm: 10 rows"):
        recall_at_n(db, q, db_utm[:10], q_utm)
    with pytest.raises(InputError, match="expected both"):
        recall_at_n(db, q, db_utm, q_utm, db_times=np.zeros(len(db)))
    with pytest.raises(InputError, match="ns ="):
        recall_at_n(db, q, db_utm, q_utm, ns=(0, 5))
    with pytest.raises(InputError, match="dims differ"):
        recall_at_n(db, q[:, :4], db_utm, q_utm)
