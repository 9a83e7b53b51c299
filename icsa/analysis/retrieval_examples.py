"""Fig. 4: retrieval examples — a few queries with their top-k database images.

A retrieved image is a hit (green frame) when it lies within ``threshold`` metres (UTM) of the
query, as in Recall@N; otherwise it is a miss (red frame). Queries are picked with a fixed seed,
half among those found at rank 1 and half among the rest, so that the figure shows successes
and failures alike rather than a flattering selection.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from icsa.analysis.plotting import save_figure  # noqa: E402
from icsa.errors import InputError  # noqa: E402
from icsa.io import atomic_path  # noqa: E402
from icsa.step_settings import POSITIVE_RADIUS_M  # noqa: E402


@dataclass(frozen=True)
class Example:
    query: int
    db: list[int]  # top-k database indices, best first
    dist_m: list[float]  # UTM distance from the query, metres
    hit: list[bool]  # dist_m <= threshold


def select_queries(first_hit_rank: np.ndarray, n: int, seed: int = 0) -> list[int]:
    """``n`` query indices: ⌈n/2⌉ found at rank 1 (rank 0), the rest not, topped up if short."""
    rank = np.asarray(first_hit_rank)
    rng = np.random.default_rng(seed)
    good, bad = np.flatnonzero(rank == 0), np.flatnonzero(rank != 0)
    n = min(n, rank.size)
    n_good = min(len(good), (n + 1) // 2)
    n_bad = min(len(bad), n - n_good)
    n_good = min(len(good), n - n_bad)  # top up with successes when failures are scarce
    chosen = np.concatenate(
        [rng.choice(good, n_good, replace=False), rng.choice(bad, n_bad, replace=False)]
    )
    return [int(i) for i in chosen]


def build_examples(
    queries: Sequence[int],
    indices: np.ndarray,
    db_utm: np.ndarray,
    q_utm: np.ndarray,
    k: int = 5,
    threshold: float = POSITIVE_RADIUS_M,
) -> list[Example]:
    """Top-``k`` retrieved images of each query with their UTM distances and hit flags."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[1] < k:
        raise InputError(f"per-query indices: shape {indices.shape}; expected [M, >= {k}]")
    out = []
    for q in queries:
        db = [int(i) for i in indices[q, :k]]
        d = np.linalg.norm(np.asarray(db_utm)[db] - np.asarray(q_utm)[q], axis=1)
        out.append(Example(int(q), db, [float(x) for x in d], [bool(x <= threshold) for x in d]))
    return out


def _show(ax, path: str | os.PathLike, color: str, title: str) -> None:
    with Image.open(path) as img:
        ax.imshow(np.asarray(img.convert("RGB")))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(4)
    ax.set_title(title, fontsize=7, color=color)


def plot_examples(
    examples: Sequence[Example],
    q_paths: Sequence[str | os.PathLike],
    db_paths: Sequence[str | os.PathLike],
    out_png: str | os.PathLike,
    data_label: str | None = None,
) -> None:
    """One row per query: the query (black frame) then its top-k, green = hit, red = miss."""
    if not examples:
        raise InputError("retrieval examples: no queries selected; expected at least one")
    k = len(examples[0].db)
    fig, axes = plt.subplots(
        len(examples), k + 1, figsize=(1.7 * (k + 1), 1.5 * len(examples)), squeeze=False
    )
    for row, ex in zip(axes, examples):
        _show(row[0], q_paths[ex.query], "black", f"query {ex.query}")
        for j, (db, d, hit) in enumerate(zip(ex.db, ex.dist_m, ex.hit)):
            _show(row[j + 1], db_paths[db], "green" if hit else "red", f"#{j + 1}: {d:.0f} m")
    save_figure(fig, out_png, dpi=110, data_label=data_label)


def write_examples_csv(
    examples: Sequence[Example],
    q_paths: Sequence[str | os.PathLike],
    db_paths: Sequence[str | os.PathLike],
    out_csv: str | os.PathLike,
) -> None:
    """One row per shown database image: query, rank, indices, paths, distance, hit."""
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "query_path", "rank", "db", "db_path", "distance_m", "hit"])
        for ex in examples:
            for j, (db, d, hit) in enumerate(zip(ex.db, ex.dist_m, ex.hit), start=1):
                w.writerow([ex.query, q_paths[ex.query], j, db, db_paths[db], f"{d:.2f}", hit])
