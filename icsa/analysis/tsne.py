"""Figs. 6–8: t-SNE of the local descriptors entering NetVLAD, one panel per model.

As in the paper (Sec. 4.2.1), the descriptors of all models are projected *together* into one
2-D map, so that the panels share coordinates and can be compared: the paper reads the
sparsening of the point cloud from VGG16 over +IA to +ICSA off these panels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from icsa.analysis.plotting import save_figure  # noqa: E402
from icsa.errors import InputError  # noqa: E402
from icsa.io import atomic_path  # noqa: E402


def joint_tsne(
    samples: Mapping[str, np.ndarray],
    perplexity: float = 30.0,
    seed: int = 0,
    max_points_per_model: int | None = 2000,
) -> dict[str, np.ndarray]:
    """Embed all models' descriptors [N_i, C] in one t-SNE; returns {label: [N_i', 2]}.

    Each model keeps at most ``max_points_per_model`` rows (a fixed-seed subsample), since
    t-SNE is O(N log N) per iteration and the panels only need the shape of the cloud.
    Perplexity is lowered to (N-1)/3 when there are few points (sklearn requires < N).
    """
    if not samples:
        raise InputError("t-SNE: got no models; expected at least one descriptor sample")
    rng = np.random.default_rng(seed)
    parts: dict[str, np.ndarray] = {}
    for label, x in samples.items():
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] < 2:
            raise InputError(f"t-SNE sample {label!r}: shape {x.shape}; expected [N>=2, C]")
        if max_points_per_model and x.shape[0] > max_points_per_model:
            x = x[np.sort(rng.choice(x.shape[0], max_points_per_model, replace=False))]
        parts[label] = x
    dims = {x.shape[1] for x in parts.values()}
    if len(dims) != 1:
        raise InputError(f"t-SNE samples: descriptor lengths {sorted(dims)}; expected one C")
    stacked = np.concatenate(list(parts.values()), axis=0)
    perp = min(perplexity, max(1.0, (stacked.shape[0] - 1) / 3))
    emb = TSNE(
        n_components=2, perplexity=perp, init="pca", random_state=seed, learning_rate="auto"
    ).fit_transform(stacked)
    out, start = {}, 0
    for label, x in parts.items():
        out[label] = emb[start : start + x.shape[0]]
        start += x.shape[0]
    return out


def plot_tsne_panel(
    embeddings: Mapping[str, np.ndarray],
    label: str,
    out_png: str | os.PathLike,
    title: str | None = None,
    data_label: str | None = None,
) -> None:
    """Draw ``label``'s points over the common limits of all embeddings (others in light grey)."""
    allpts = np.concatenate(list(embeddings.values()), axis=0)
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    pad = 0.03 * (hi - lo + 1e-9)
    fig, ax = plt.subplots(figsize=(5, 5))
    for other, pts in embeddings.items():
        if other != label:
            ax.scatter(pts[:, 0], pts[:, 1], s=2, c="0.88", lw=0)
    pts = embeddings[label]
    ax.scatter(pts[:, 0], pts[:, 1], s=3, c="tab:blue", lw=0)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_title(title or f"t-SNE of local descriptors: {label} ({len(pts)} points)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, out_png, data_label=data_label)


def save_embeddings(embeddings: Mapping[str, np.ndarray], out_npz: str | os.PathLike) -> None:
    """``points[N,2]`` float32 and ``labels[N]`` (model label per point) in one .npz."""
    labels = np.concatenate([[k] * len(v) for k, v in embeddings.items()]).astype(str)
    points = np.concatenate(list(embeddings.values()), axis=0).astype(np.float32)
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, points=points, labels=labels)
