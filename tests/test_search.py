"""Exact kNN search: brute-force reference, shards == whole, ties by index, memmaps."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from icsa.errors import InputError
from icsa.evaluate import merge_topk, plan_search, search


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def brute_force(db: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 distance matrix, ordered by (distance, index) with explicit loops."""
    dist = ((q.astype(np.float64)[:, None, :] - db.astype(np.float64)[None]) ** 2).sum(-1)
    out_d, out_i = [], []
    for row in dist:
        order = sorted(range(len(db)), key=lambda j: (row[j], j))[:k]
        out_i.append(order)
        out_d.append(row[order])
    return np.array(out_d), np.array(out_i)


def test_search_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    db = rng.standard_normal((300, 32)).astype(np.float32)
    q = rng.standard_normal((70, 32)).astype(np.float32)
    ref_d, ref_i = brute_force(db, q, 10)
    dist, idx = search(db, q, 10, tile_rows=64, query_tile=16)
    assert np.array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-5, atol=1e-4)


def test_ties_broken_by_index_across_tiles_and_shards():
    # Integer vectors: every squared distance is an exact small integer in float32, so ties are
    # exact and the (distance, index) order of the reference is the only right answer.
    rng = np.random.default_rng(1)
    base = rng.integers(0, 3, size=(12, 6)).astype(np.float32)
    db = base[rng.integers(0, 12, size=200)]  # many duplicate rows
    q = np.concatenate([base[:5], rng.integers(0, 3, size=(40, 6)).astype(np.float32)])
    ref_d, ref_i = brute_force(db, q, 30)
    for shard_rows in (None, 7, 32, 64, 150):
        dist, idx = search(db, q, 30, shard_rows=shard_rows, tile_rows=16, query_tile=8)
        assert np.array_equal(idx, ref_i), shard_rows
        assert np.array_equal(dist, ref_d.astype(np.float32)), shard_rows


def test_sharded_equals_whole_with_duplicates_and_memmap(tmp_path):
    rng = np.random.default_rng(2)
    db = rng.standard_normal((2600, 200)).astype(np.float32)
    db[1200:1500] = db[:300]  # duplicate rows in other shards and tiles
    db[2000:2100] = db[7]
    q = rng.standard_normal((300, 200)).astype(np.float32)
    q[:20] = db[:20]
    np.save(tmp_path / "db.npy", db)
    mm = np.load(tmp_path / "db.npy", mmap_mode="r")
    whole_d, whole_i = search(db, q, 25)
    for kwargs in (
        {"shard_rows": 1},
        {"shard_rows": 1024},
        {"shard_rows": 2048},
        {"shard_rows": 1024, "query_chunk": 256},
        {"memory_budget_mb": 2},
    ):
        dist, idx = search(mm, q, 25, **kwargs)
        assert np.array_equal(dist, whole_d), kwargs
        assert np.array_equal(idx, whole_i), kwargs
    # Query 7 is row 7; its copies (1207, 2000…2099) tie with it and follow by index.
    assert list(whole_i[7, :10]) == [7, 1207, *range(2000, 2008)]


def test_float16_and_k_larger_than_database():
    rng = np.random.default_rng(3)
    db = rng.standard_normal((20, 16)).astype(np.float16)
    q = rng.standard_normal((5, 16)).astype(np.float16)
    dist, idx = search(db, q, 50)
    ref_d, ref_i = brute_force(db.astype(np.float32), q.astype(np.float32), 20)
    assert idx.shape == (5, 20)
    assert np.array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-5, atol=1e-4)


def test_plan_search_keeps_whole_tiles_within_budget():
    plan = plan_search(10_000, 6_816, 32_768, memory_budget_mb=1024)
    assert plan.shard_rows % plan.tile_rows == 0 and plan.query_chunk % plan.query_tile == 0
    assert plan.shard_rows * 32_768 * 4 <= 1024 * 2**20 * 0.5
    assert plan_search(100, 10, 8).shard_rows == 1024  # one tile covers a small database
    assert plan_search(10_000, 10, 8).shard_rows == 10_240  # the whole database, in tiles
    assert plan_search(10_000, 10, 8, shard_rows=3000).shard_rows == 2048


def test_merge_topk_puts_empty_slots_last():
    d, i = merge_topk(
        np.array([[1.0, np.inf]], np.float32), np.array([[4, -1]]),
        np.array([[1.0, 0.5]], np.float32), np.array([[2, 9]]), 3,
    )  # fmt: skip
    assert i.tolist() == [[9, 2, 4]] and d.tolist() == [[0.5, 1.0, 1.0]]


def test_bad_inputs_are_input_errors():
    db = np.zeros((10, 8), np.float32)
    with pytest.raises(InputError, match="dims differ"):
        search(db, np.zeros((3, 4), np.float32), 5)
    with pytest.raises(InputError, match="k = 0"):
        search(db, np.zeros((3, 8), np.float32), 0)
    with pytest.raises(InputError, match="memory_budget_mb"):
        search(db, np.zeros((3, 8), np.float32), 2, memory_budget_mb=0)


def _rss_file_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


def test_read_rows_copies_and_releases_memmap_pages(tmp_path):
    from icsa.evaluate.memmap import read_rows

    data = np.random.default_rng(4).standard_normal((2048, 2048)).astype(np.float32)  # 16 MB
    np.save(tmp_path / "big.npy", data)
    mm = np.load(tmp_path / "big.npy", mmap_mode="r")
    before = _rss_file_kb()
    blocks = [read_rows(mm, s, s + 512) for s in range(0, 2048, 512)]
    assert all(not isinstance(b, np.memmap) and b.flags.c_contiguous for b in blocks)
    assert np.array_equal(np.concatenate(blocks), data)
    assert np.array_equal(read_rows(mm, 100, 1900, np.float64, piece_bytes=2**20), data[100:1900])
    assert _rss_file_kb() - before < 8 * 1024  # the 16 MB file did not stay resident
    float(mm.sum())  # touching every page the ordinary way does keep it resident
    assert _rss_file_kb() - before > 12 * 1024


def test_torch_tile_searcher_matches_brute_force():
    """The GPU backend where faiss has none (torch, exact float32), run here on the CPU."""
    from icsa.evaluate.search import torch_tile_searcher

    rng = np.random.default_rng(3)
    db = rng.standard_normal((200, 24)).astype(np.float32)
    q = rng.standard_normal((40, 24)).astype(np.float32)
    ref_d, ref_i = brute_force(db, q, 7)
    dist, idx = torch_tile_searcher(db, device="cpu")(q, 7)
    assert idx.dtype == np.int64 and np.array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-5, atol=1e-4)
    assert torch_tile_searcher(db[:5], device="cpu")(q, 7)[1].shape == (40, 5)  # k capped
