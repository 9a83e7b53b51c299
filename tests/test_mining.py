"""Hard-negative mining on descriptor arrays: geometry, positives, negatives, skips (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from icsa.errors import InputError
from icsa.train.mining import HardNegativeMiner, build_geometry, sample_negatives
from icsa.train.settings import TrainSettings


def _brute_within(db, q, radius):
    d = np.sqrt(((q[:, None, :] - db[None, :, :]) ** 2).sum(-1))
    return [np.flatnonzero(row <= radius) for row in d]


@pytest.fixture
def world():
    rng = np.random.default_rng(3)
    db = rng.uniform(0, 200, (300, 2))
    q = rng.uniform(0, 200, (60, 2))
    q[0] = db[5] + [10.0, 0.0]  # exactly at the positive radius (inclusive)
    q[1] = [1000.0, 1000.0]  # far from everything: no positive
    return db, q


def test_geometry_matches_brute_force(world):
    db, q = world
    geo = build_geometry(db, q, 10.0, 25.0)
    for got, want in zip(geo.positives, _brute_within(db, q, 10.0)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(geo.near, _brute_within(db, q, 25.0)):
        np.testing.assert_array_equal(got, want)
    assert 5 in geo.positives[0]
    assert 1 not in geo.trainable_queries
    assert geo.queries_without_positive == sum(len(p) == 0 for p in _brute_within(db, q, 10.0))


def test_time_rule_drops_same_time_positives(world):
    db, q = world
    db_t = np.arange(len(db)) % 3
    q_t = np.arange(len(q)) % 3
    geo = build_geometry(db, q, 10.0, 25.0, db_t, q_t)
    for i, (pos, ref) in enumerate(zip(geo.positives, _brute_within(db, q, 10.0))):
        np.testing.assert_array_equal(pos, ref[db_t[ref] != q_t[i]])
    # near (the exclusion zone for negatives) keeps same-time images: they are not negatives
    np.testing.assert_array_equal(geo.near[0], _brute_within(db, q, 25.0)[0])


def test_sample_negatives_excludes_near_and_is_seeded():
    near = np.array([0, 2, 3, 7])
    a = sample_negatives(near, 10, 500, np.random.default_rng(1))
    b = sample_negatives(near, 10, 500, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert len(a) == 500 and not np.isin(a, near).any()
    assert set(a.tolist()) == {1, 4, 5, 6, 8, 9}  # with replacement: all reachable
    assert len(sample_negatives(np.arange(10), 10, 5, np.random.default_rng(1))) == 0


def test_mined_triplets_respect_geometry_and_hardness(world):
    db, q = world
    rng = np.random.default_rng(0)
    db_desc = rng.normal(size=(len(db), 16)).astype(np.float32)
    q_desc = rng.normal(size=(len(q), 16)).astype(np.float32)
    geo = build_geometry(db, q, 10.0, 25.0)
    margin = 5.0  # large, so that most queries find violators
    miner = HardNegativeMiner(geo, margin=margin, neg_samples=50, neg_kept=10)
    mined = 0
    for qi in geo.trainable_queries:
        state = np.random.default_rng(int(qi))
        triplet = miner.mine(int(qi), q_desc[qi], db_desc, state)
        if triplet is None:
            continue
        mined += 1
        # positive: within 10 m, and the nearest in feature space among the 10 m set
        assert np.hypot(*(db[triplet.positive] - q[qi])) <= 10.0
        pos = geo.positives[qi]
        d_pos = np.linalg.norm(db_desc[pos] - q_desc[qi], axis=1)
        assert triplet.positive == pos[np.argmin(d_pos)]
        # negatives: beyond 25 m, violating the margin, nearest first, the hardest of the sample
        assert np.all(np.hypot(*(db[triplet.negatives] - q[qi]).T) > 25.0)
        d_neg = np.linalg.norm(db_desc[triplet.negatives] - q_desc[qi], axis=1)
        assert np.all(d_neg < d_pos.min() + margin) and np.all(np.diff(d_neg) >= 0)
        assert 1 <= len(triplet.negatives) <= 10
        sample = np.unique(
            sample_negatives(geo.near[qi], len(db), 50, np.random.default_rng(int(qi)))
        )
        d_sample = np.linalg.norm(db_desc[sample] - q_desc[qi], axis=1)
        violators = np.sort(d_sample[d_sample < d_pos.min() + margin])[:10]
        np.testing.assert_allclose(d_neg, violators, rtol=1e-6)
        np.testing.assert_array_equal(
            miner.neg_cache[qi, : len(triplet.negatives)], triplet.negatives
        )
    assert mined > 20


def test_previous_hard_negatives_are_reused_and_easy_queries_skipped():
    db = np.array([[0.0, 0.0], [5.0, 0.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])
    q = np.array([[1.0, 0.0]])
    geo = build_geometry(db, q, 10.0, 25.0)
    db_desc = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [5, 5], [6, 6]], dtype=np.float32)
    query = np.array([1.0, 0.0], np.float32)
    # a seed whose single sampled negative is not the hard one (index 2)
    seed = next(
        s
        for s in range(50)
        if sample_negatives(geo.near[0], 5, 1, np.random.default_rng(s))[0] != 2
    )
    fresh = HardNegativeMiner(geo, margin=0.5, neg_samples=1, neg_kept=2)
    assert fresh.mine(0, query, db_desc, np.random.default_rng(seed)) is None
    miner = HardNegativeMiner(geo, margin=0.5, neg_samples=1, neg_kept=2)
    miner.neg_cache[0, 0] = 2  # the hardest negative, found on a previous visit
    triplet = miner.mine(0, query, db_desc, np.random.default_rng(seed))
    assert triplet is not None and triplet.positive == 0
    np.testing.assert_array_equal(triplet.negatives, [2])
    # a query already far closer to its positive than to any negative gives no triplet
    easy = HardNegativeMiner(geo, margin=0.01, neg_samples=10, neg_kept=2)
    far = db_desc.copy()
    far[2] = [50, 50]
    assert easy.mine(0, np.array([1.0, 0.0], np.float32), far, np.random.default_rng(0)) is None


def test_settings_round_trip_and_errors():
    s = TrainSettings.from_dict({"epochs": 3, "lr": 0.01})
    assert s.epochs == 3 and s.lr == 0.01 and s.neg_kept == 10
    assert abs(s.margin - 0.1**0.5) < 1e-12
    assert TrainSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(InputError, match="unknown keys \\['epoch'\\]"):
        TrainSettings.from_dict({"epoch": 3})
    with pytest.raises(InputError, match="batch_size=0"):
        TrainSettings(batch_size=0)
    with pytest.raises(InputError, match="prefix_cache_dtype"):
        TrainSettings(prefix_cache_dtype="int8")


def _reference_batch(miner, queries, q_desc, db_desc, rng):
    """What training did before mine_batch: ``mine`` query by query on numpy arrays."""
    return [miner.mine(int(q), q_desc[i], db_desc, rng) for i, q in enumerate(queries)]


@pytest.mark.parametrize("dim", [16, 4096])
def test_mine_batch_makes_the_reference_choices(world, dim):
    """Batched mining on tensors = ``mine`` per query: the same triplets, the same negative
    cache, the same generator state after it, over several visits (the cache feeds back)."""
    torch = pytest.importorskip("torch")
    db, q = world
    rng = np.random.default_rng(1)
    db_desc = rng.normal(size=(len(db), dim)).astype(np.float32)
    q_desc = rng.normal(size=(len(q), dim)).astype(np.float32)
    db_desc /= np.linalg.norm(db_desc, axis=1, keepdims=True)
    q_desc /= np.linalg.norm(q_desc, axis=1, keepdims=True)
    geo = build_geometry(db, q, 10.0, 25.0)
    ref = HardNegativeMiner(geo, margin=0.3, neg_samples=60, neg_kept=4)
    new = HardNegativeMiner(geo, margin=0.3, neg_samples=60, neg_kept=4)
    gen_ref, gen_new = np.random.default_rng(7), np.random.default_rng(7)
    db_t = torch.from_numpy(db_desc)
    mined = 0
    # every query (the one without positives included), in batches of 4, three visits each
    for visit in range(3):
        order = np.random.default_rng(visit).permutation(len(q))
        for start in range(0, len(order), 4):
            batch = [int(i) for i in order[start : start + 4]]
            want = _reference_batch(ref, batch, q_desc[batch], db_desc, gen_ref)
            got = new.mine_batch(batch, torch.from_numpy(q_desc[batch]), db_t, gen_new)
            assert len(got) == len(want)
            for a, b in zip(got, want):
                assert (a is None) == (b is None)
                if a is not None:
                    mined += 1
                    assert (a.query, a.positive) == (b.query, b.positive)
                    np.testing.assert_array_equal(a.negatives, b.negatives)
            np.testing.assert_array_equal(new.neg_cache, ref.neg_cache)
    assert gen_new.integers(1 << 30) == gen_ref.integers(1 << 30)
    assert mined > 60 and (new.neg_cache >= 0).sum() > 0


def test_mine_batch_refuses_a_query_twice(world):
    torch = pytest.importorskip("torch")
    db, q = world
    miner = HardNegativeMiner(build_geometry(db, q, 10.0, 25.0), 0.1, 10, 2)
    desc = torch.zeros((2, 8))
    with pytest.raises(ValueError, match="repeat"):
        miner.mine_batch([3, 3], desc, torch.zeros((len(db), 8)), np.random.default_rng(0))


def test_the_mining_cache_stays_on_the_gpu_only_where_it_fits():
    import torch

    from icsa.train.loop import MINING_CACHE_SHARE, mining_cache_device

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    free = 1000
    assert mining_cache_device(10**9, cpu, 0) == cpu  # a CPU run: where it trains
    assert mining_cache_device(int(MINING_CACHE_SHARE * free), cuda, free) == cuda
    assert mining_cache_device(int(MINING_CACHE_SHARE * free) + 1, cuda, free) == cpu
