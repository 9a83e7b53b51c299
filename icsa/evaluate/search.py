"""Exact L2 nearest neighbours over a database that need not fit in memory.

The database (often a read-only ``np.memmap`` of a ``.npy``) is read in row *shards* that do fit;
each shard is searched in fixed tiles of ``tile_rows`` database rows × ``query_tile`` queries
with faiss's exhaustive L2 kernel (``IndexFlatL2``'s), and the per-tile top-k lists are merged
exactly. Tiles start at multiples of their size from row 0 whatever the shard and chunk sizes,
because faiss's BLAS path rounds ``|q|² + |x|² − 2 q·x`` differently for different block shapes:
with one fixed tiling every (query, row) distance is the same float whether the database was read
whole or in shards, so sharded and unsharded searches return identical arrays. Ties are broken by
the smaller database index (faiss's heap does the same inside a tile, and the merge sorts on
``(distance, index)``).

On a GPU the search runs in faiss's GPU index when faiss-gpu is installed, else in torch on the
GPU (float32 without TF32: |q|² + |x|² − 2 q·x, then top-k); there a tile is a whole shard ×
query chunk, because small tiles leave the GPU idle, so GPU searches are exact but their
distances may round differently from the CPU's in the last bits (and ties follow the GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import faiss
import numpy as np
from tqdm import tqdm

from icsa.errors import InputError
from icsa.evaluate.memmap import read_rows

TILE_ROWS = 1024
QUERY_TILE = 256


@dataclass(frozen=True)
class SearchPlan:
    """How many database rows (shard) and queries (chunk) are held in memory at once."""

    shard_rows: int
    query_chunk: int
    tile_rows: int
    query_tile: int


def plan_search(
    num_db: int,
    num_q: int,
    dim: int,
    memory_budget_mb: float | None = None,
    shard_rows: int | None = None,
    query_chunk: int = 1024,
    tile_rows: int = TILE_ROWS,
    query_tile: int = QUERY_TILE,
) -> SearchPlan:
    """Shard and chunk sizes; with a budget, about half of it holds the shard, a quarter queries.

    Shards and chunks are whole tiles so that the tiling (hence every distance) never changes.
    """
    if min(tile_rows, query_tile, query_chunk) < 1:
        raise InputError(
            f"tile_rows = {tile_rows}, query_tile = {query_tile}, query_chunk = {query_chunk}; "
            "expected each >= 1"
        )
    row_bytes = 4 * dim  # float32 copies, whatever the file's dtype
    if memory_budget_mb is not None:
        if memory_budget_mb <= 0:
            raise InputError(f"memory_budget_mb = {memory_budget_mb}, expected > 0")
        budget = memory_budget_mb * 2**20
        shard_rows = int(budget * 0.5 // row_bytes)
        # A query row costs its descriptor plus one distance per tile row (faiss's buffer).
        query_chunk = max(1, min(query_chunk, int(budget * 0.25 // (row_bytes + 4 * tile_rows))))
    if shard_rows is not None and shard_rows < 1:
        raise InputError(f"shard_rows = {shard_rows}, expected >= 1")
    # Whole tiles per shard (at least one); one shard covers a database that fits.
    whole = max(tile_rows, math.ceil(num_db / tile_rows) * tile_rows)
    if shard_rows is None or shard_rows >= num_db:
        shard_rows = whole
    shard_rows = min(whole, max(tile_rows, (shard_rows // tile_rows) * tile_rows))
    query_chunk = max(query_tile, (query_chunk // query_tile) * query_tile)
    query_chunk = min(query_chunk, max(query_tile, math.ceil(num_q / query_tile) * query_tile))
    return SearchPlan(shard_rows, query_chunk, tile_rows, query_tile)


def _gpu_resources():
    """faiss GPU resources when both torch and faiss see a GPU, else None (CPU search)."""
    import torch  # here, not at the top: a CPU search (`icsa evaluate --device cpu`) needs none

    if not torch.cuda.is_available() or not hasattr(faiss, "StandardGpuResources"):
        return None
    if faiss.get_num_gpus() < 1:
        return None
    return faiss.StandardGpuResources()


TORCH_CUDA = "torch-cuda"  # the GPU backend where faiss has none


def _gpu_backend():
    """faiss GPU resources, or TORCH_CUDA when only torch sees a GPU, or None (CPU search)."""
    import torch

    gpu = _gpu_resources()
    if gpu is None and torch.cuda.is_available():
        return TORCH_CUDA
    return gpu


def torch_tile_searcher(tile: np.ndarray, device: str = "cuda"):
    """``search(queries, k)`` over one tile held in ``device`` memory, with torch (exact
    float32; the GPU backend where faiss has none)."""
    import torch

    x = torch.from_numpy(tile).to(device)
    x_sq = (x * x).sum(1)

    def run(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(queries).to(device)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 keeps 10 mantissa bits
        try:
            dist = ((q * q).sum(1, keepdim=True) + x_sq - 2.0 * (q @ x.T)).clamp_min_(0)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        d, i = torch.topk(dist, min(k, len(x)), dim=1, largest=False, sorted=True)
        return d.cpu().numpy(), i.cpu().numpy().astype(np.int64)

    return run


def _tile_searcher(tile: np.ndarray, gpu):
    """``search(queries, k)`` over one tile; on the CPU faiss.knn runs IndexFlatL2's kernel
    without copying the tile, on a GPU the tile is uploaded once into a GpuIndexFlatL2 (or a
    torch tensor)."""
    if gpu is None:
        return lambda queries, k: faiss.knn(queries, tile, min(k, len(tile)))
    if gpu == TORCH_CUDA:
        return torch_tile_searcher(tile)
    index = faiss.GpuIndexFlatL2(gpu, tile.shape[1])
    index.add(tile)
    return lambda queries, k: index.search(queries, min(k, len(tile)))


def merge_topk(
    dist_a: np.ndarray, idx_a: np.ndarray, dist_b: np.ndarray, idx_b: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise k smallest of two candidate lists, ordered by (distance, index).

    Empty slots carry index −1 and distance +inf so that they sort last.
    """
    dist = np.concatenate([dist_a, dist_b], axis=1)
    idx = np.concatenate([idx_a, idx_b], axis=1)
    # −1 (empty) must lose every tie: sort it as the largest index.
    key_idx = np.where(idx < 0, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key_idx, dist), axis=-1)[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def _check_inputs(db: np.ndarray, queries: np.ndarray, k: int) -> None:
    if db.ndim != 2 or queries.ndim != 2:
        raise InputError(f"db {db.shape}, queries {queries.shape}: expected 2-D [rows, dim]")
    if db.shape[1] != queries.shape[1]:
        raise InputError(
            f"descriptor dims differ: database {db.shape[1]}, queries {queries.shape[1]}; "
            "expected the same dimension (same model, same PCA)"
        )
    if k < 1:
        raise InputError(f"k = {k}, expected >= 1")


def search(
    db: np.ndarray,
    queries: np.ndarray,
    k: int,
    shard_rows: int | None = None,
    query_chunk: int = 1024,
    memory_budget_mb: float | None = None,
    tile_rows: int = TILE_ROWS,
    query_tile: int = QUERY_TILE,
    use_gpu: bool | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest database rows of each query: (squared L2 distances[M,k], indices[M,k]).

    ``db``/``queries`` may be memmaps (float32 or float16; computed in float32). k is capped at
    the database size. ``memory_budget_mb`` derives ``shard_rows`` and ``query_chunk``.
    ``use_gpu=None`` searches on the GPU when torch sees one (faiss's GPU index where faiss-gpu
    is installed, else torch; see the module docstring).
    ``progress`` shows a bar over (shard, query chunk) steps.
    """
    _check_inputs(db, queries, k)
    num_db, dim = db.shape
    num_q = len(queries)
    k = min(k, num_db)
    plan = plan_search(
        num_db, num_q, dim, memory_budget_mb, shard_rows, query_chunk, tile_rows, query_tile
    )
    gpu = _gpu_backend() if use_gpu in (None, True) else None
    if use_gpu and gpu is None:
        raise InputError("use_gpu = True, but torch sees no GPU")
    if gpu is not None:  # one tile per shard and query chunk (module docstring)
        plan = replace(plan, tile_rows=plan.shard_rows, query_tile=plan.query_chunk)
    best_d = np.full((num_q, k), np.inf, dtype=np.float32)
    best_i = np.full((num_q, k), -1, dtype=np.int64)
    steps = math.ceil(num_db / plan.shard_rows) * math.ceil(num_q / plan.query_chunk)
    bar = tqdm(total=steps, desc="search", unit="block", mininterval=5, disable=not progress)
    for s0 in range(0, num_db, plan.shard_rows):
        # One read of the shard from disk; float32 and contiguous as faiss needs.
        shard, tile_search = read_rows(db, s0, s0 + plan.shard_rows), None
        for q0 in range(0, num_q, plan.query_chunk):
            q = read_rows(queries, q0, q0 + plan.query_chunk)
            for t0 in range(0, len(shard), plan.tile_rows):
                tile_search = _tile_searcher(shard[t0 : t0 + plan.tile_rows], gpu)
                for u0 in range(0, len(q), plan.query_tile):
                    rows = slice(q0 + u0, q0 + u0 + plan.query_tile)
                    tile_d, tile_i = tile_search(q[u0 : u0 + plan.query_tile], k)
                    tile_i = np.where(tile_i >= 0, tile_i + (s0 + t0), -1)
                    best_d[rows], best_i[rows] = merge_topk(
                        best_d[rows], best_i[rows], tile_d, tile_i, k
                    )
            bar.update()
            del q  # free before the next chunk is read, or two are held at once
        del shard, tile_search  # the searcher holds a view of the shard
    bar.close()
    return best_d, best_i
