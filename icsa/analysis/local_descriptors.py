"""Local descriptors entering NetVLAD, gathered in one streaming pass for Figs. 5–8.

The paper (Sec. 4.2.1) splits the attention output of every test image by spatial location,
giving H×W vectors of length C per image, and analyses all of them together: an SVD (Fig. 5)
and a t-SNE projection (Figs. 6–8). All locations of a real test set (10k images × 1200
locations × 512 floats ≈ 25 GB) do not fit in memory, so one pass accumulates what each
analysis needs: the C×C Gram matrix XᵀX in float64 (its eigenvalues are the squared singular
values of X) and a fixed-seed random subsample of locations for t-SNE.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from icsa.errors import InputError
from icsa.io import atomic_path
from icsa.registry import network_label


@dataclass(frozen=True)
class LocalStats:
    """What one pass over the images keeps: Gram matrix, location count and a sample."""

    gram: np.ndarray  # [C, C] float64, sum over all locations of x xᵀ
    count: int  # number of locations (rows of X)
    sample: np.ndarray  # [S, C] float32, per_image random locations per image
    num_images: int


def to_rows(features: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] → [B*h*w, C]: one row per image location (image-major, then row-major)."""
    b, c, h, w = features.shape
    return features.permute(0, 2, 3, 1).reshape(b * h * w, c)


@torch.no_grad()
def gather_local_stats(
    model: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    per_image: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    total: int | None = None,
) -> LocalStats:
    """Run ``model.local_features`` over ``batches`` of images [B,3,H,W].

    ``per_image`` locations are drawn without replacement from each image (all of them if the
    map is smaller) with a generator seeded by ``seed``, so the sample repeats exactly.
    """
    model = model.to(device).eval()
    rng = np.random.default_rng(seed)
    gram: torch.Tensor | None = None
    count = 0
    num_images = 0
    samples: list[np.ndarray] = []
    for images in tqdm(batches, desc="local descriptors", total=total, mininterval=5):
        feats = model.local_features(images.to(device))  # [B, C, h, w]
        b, c, h, w = feats.shape
        rows = to_rows(feats).double()  # [B*h*w, C]
        # float64 Gram: small singular values (ratios ~1e-3) survive the squaring.
        g = rows.T @ rows  # [C, C]
        gram = g if gram is None else gram + g
        count += rows.shape[0]
        per_img = rows.view(b, h * w, c).float().cpu().numpy()
        for i in range(b):
            take = min(per_image, h * w)
            idx = np.sort(rng.choice(h * w, size=take, replace=False))
            samples.append(per_img[i, idx])
        num_images += b
    if gram is None:
        raise InputError("images: got an empty image list; expected at least one image")
    return LocalStats(
        gram=gram.cpu().numpy(),
        count=count,
        sample=np.concatenate(samples, axis=0).astype(np.float32),
        num_images=num_images,
    )


def model_label(config: dict) -> str:
    """'VGG16', 'VGG16+ICSA', … from a model config (the paper's naming)."""
    return network_label(config["backbone"], config.get("attention", "none"))


def spaced_indices(n: int, max_items: int | None) -> np.ndarray:
    """At most ``max_items`` indices spread evenly over range(n) (all of them if fewer)."""
    if not max_items or max_items >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_items).round().astype(int))


def local_stats_for_checkpoint(
    checkpoint: str | os.PathLike,
    dataset_root: str | os.PathLike,
    dataset: str,
    split: str,
    images: str = "all",
    max_images: int | None = 500,
    per_image: int = 10,
    seed: int = 0,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "auto",
    layout: str = "netvlad",
) -> tuple[LocalStats, dict]:
    """Local-descriptor statistics of a trained model on a split's images (db, q or all).

    Returns the stats and the model config. Images are resized to the model's image size.
    """
    from icsa.data import ImageDataset, load_split
    from icsa.train.checkpoint import load_model
    from icsa.utils import resolve_device

    choices = {"db", "q", "all"}
    if images not in choices:
        raise InputError(f"images={images!r}: expected one of {sorted(choices)}")
    dev = resolve_device(device)
    model = load_model(checkpoint, map_location=dev)
    place = load_split(dataset_root, dataset, split, layout)
    paths = {"db": place.db_paths, "q": place.q_paths, "all": place.db_paths + place.q_paths}
    chosen = [paths[images][i] for i in spaced_indices(len(paths[images]), max_images)]
    ds = ImageDataset(chosen, model.config["image_size"], name=f"{place.name}-{images}")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    stats = gather_local_stats(
        model,
        (x for x, _ in loader),
        per_image=per_image,
        seed=seed,
        device=dev,
        total=len(loader),
    )
    return stats, dict(model.config)


def save_stats(stats: LocalStats, label: str, out_npz: str | os.PathLike) -> None:
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            gram=stats.gram,
            count=stats.count,
            sample=stats.sample,
            num_images=stats.num_images,
            label=np.array(label),
        )


def load_stats(path: str | os.PathLike) -> tuple[LocalStats, str]:
    """Inverse of :func:`save_stats`: (stats, label)."""
    try:
        z = np.load(path)
        stats = LocalStats(
            gram=z["gram"],
            count=int(z["count"]),
            sample=z["sample"],
            num_images=int(z["num_images"]),
        )
        return stats, str(z["label"])
    except (KeyError, ValueError, OSError) as err:
        raise InputError(
            f"{path}: not a local-stats file ({err}); expected gram/count/sample"
        ) from err
