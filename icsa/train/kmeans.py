"""NetVLAD initialisation: k-means centroids of local backbone descriptors (faiss).

As in pytorch-NetVlad's ``get_clusters``: at most ``max_images`` database images of the training
split are picked at random, each contributes ``descriptors_per_image`` random locations of the
L2-normalised local features that NetVLAD receives at initialisation (NetVLAD normalises each
local descriptor too), and faiss k-means (``iterations`` rounds, fixed seed) clusters them.
For modules that are the identity when untrained that is the backbone's output; SE and CBAM
rescale channels from the start, so their sample is taken through the untrained module
(``attention``; :mod:`icsa.centroids`). The file keeps the
sample (``descriptors``) because NetVLAD's α is derived from it, and records what it was
computed from so that training can refuse a file made for another backbone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from icsa.centroids import BACKBONE_SOURCE, centroid_source
from icsa.data import ImageDataset, load_split
from icsa.data.layouts import DEFAULT_LAYOUT
from icsa.errors import InputError
from icsa.io import atomic_path
from icsa.models import build_backbone, build_model
from icsa.spec import ModelSpec
from icsa.step_settings import KMeansSettings

# The defaults of the workflow's `kmeans:` section and `icsa kmeans` (icsa.step_settings).
DEFAULTS = KMeansSettings()


@torch.no_grad()
def sample_local_descriptors(
    backbone: torch.nn.Module,
    dataset: ImageDataset,
    max_images: int,
    per_image: int,
    rng: np.random.Generator,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """[N, C] L2-normalised local descriptors: ``per_image`` random locations per image.

    Feature maps with fewer than ``per_image`` locations give all of theirs (pytorch-NetVlad
    samples without replacement, which needs at least as many locations).
    """
    images = rng.choice(len(dataset), size=min(max_images, len(dataset)), replace=False)
    loader = DataLoader(Subset(dataset, np.sort(images).tolist()), batch_size=batch_size)
    backbone = backbone.to(device).eval()
    out = []
    for batch, _ in tqdm(loader, desc="kmeans descriptors", mininterval=5):
        features = F.normalize(backbone(batch.to(device)), p=2, dim=1)  # [B,C,h,w]
        flat = features.flatten(2).transpose(1, 2).cpu().numpy()  # [B,h*w,C]
        take = min(per_image, flat.shape[1])
        for image in flat:
            out.append(image[rng.choice(flat.shape[1], size=take, replace=False)])
    return np.concatenate(out).astype(np.float32)


def run_kmeans(
    descriptors: np.ndarray, num_clusters: int, iterations: int, seed: int
) -> np.ndarray:
    """faiss k-means → centroids [K, C] float32."""
    if len(descriptors) < num_clusters:
        raise InputError(
            f"k-means: {len(descriptors)} descriptors for num_clusters={num_clusters}; expected "
            "at least one per cluster (more images or descriptors per image)"
        )
    km = faiss.Kmeans(
        descriptors.shape[1], num_clusters, niter=iterations, seed=seed, verbose=False
    )
    km.train(np.ascontiguousarray(descriptors, dtype=np.float32))
    return np.asarray(km.centroids, dtype=np.float32)


def compute_centroids(
    model: ModelSpec,
    root: str | os.PathLike,
    dataset: str,
    split: str,
    out: str | os.PathLike,
    settings: KMeansSettings = DEFAULTS,
    layout: str = DEFAULT_LAYOUT,
    seed: int = 0,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Sample descriptors of ``split``'s database with ``model``'s untrained network, cluster,
    save to ``out``.

    ``model`` is the network the centroids initialise: its backbone, weights, init seed, image
    size and K; its attention matters only when it is not the identity at initialisation
    (:func:`icsa.centroids.centroid_source`), its lowest trained block not at all. ``settings``
    is the sample (the config's ``kmeans:``); ``seed`` draws images, locations and k-means.
    A ModelSpec's image size already fits its backbone (``ModelSpec`` checks it).
    """
    backbone, weights, init_seed = model.backbone, model.weights, model.init_seed
    image_size, num_clusters = tuple(model.image_size), model.num_clusters
    if threads:
        faiss.omp_set_num_threads(threads)
    place = load_split(root, dataset, split, layout)
    images = ImageDataset(place.db_paths, image_size, name=f"{place.name}-db")
    source = centroid_source(model.attention)
    if source == BACKBONE_SOURCE:
        net = build_backbone(backbone, "none", weights, init_seed=init_seed)
    else:  # the untrained module exactly as build_model makes it for this init seed
        built = build_model(
            backbone, model.attention, num_clusters, image_size, "none", weights, init_seed
        )
        net = torch.nn.Sequential(built.backbone, built.attention)
    rng = np.random.default_rng(seed)
    descriptors = sample_local_descriptors(
        net, images, settings.max_images, settings.descriptors_per_image, rng, device=device
    )
    centroids = run_kmeans(descriptors, num_clusters, settings.iterations, seed)
    with atomic_path(out) as tmp:
        np.savez(
            tmp,
            centroids=centroids,
            descriptors=descriptors,
            backbone=np.str_(backbone),
            source=np.str_(source),
            weights=np.str_(weights),
            init_seed=np.int64(init_seed),
            image_size=np.asarray(image_size, dtype=np.int64),
            dataset=np.str_(dataset),
        )
    return {
        "num_descriptors": len(descriptors),
        "num_clusters": num_clusters,
        "dim": int(descriptors.shape[1]),
        "source": source,
        "out": str(out),
    }


def load_centroids(
    path: str | os.PathLike,
    num_clusters: int,
    channels: int,
    backbone: str | None = None,
    attention: str | None = None,
    made_with: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [K,C], descriptors [N,C]) from a ``compute_centroids`` file, checked.

    With ``attention``, a file sampled through another module (or through none where one is
    needed) is refused: its centroids would not describe what this NetVLAD receives.
    ``made_with`` (``weights``, ``init_seed``, ``image_size``) must match what the file records:
    centroids of other weights, another random init or image size describe other features.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"centroids file {path} not found; expected the output of `icsa kmeans`")
    try:
        data = np.load(path, allow_pickle=False)
        centroids, descriptors = data["centroids"], data["descriptors"]
        made_for = str(data["backbone"]) if "backbone" in data.files else None
        source = str(data["source"]) if "source" in data.files else BACKBONE_SOURCE
    except (KeyError, ValueError, OSError) as err:
        raise InputError(
            f"centroids file {path}: unreadable or without 'centroids'/'descriptors' ({err})"
        ) from err
    if centroids.ndim != 2 or centroids.shape != (num_clusters, channels):
        raise InputError(
            f"centroids file {path}: centroids shape {centroids.shape}, expected "
            f"({num_clusters}, {channels}) for num_clusters={num_clusters} and {channels} channels"
        )
    if descriptors.ndim != 2 or descriptors.shape[1] != channels:
        raise InputError(
            f"centroids file {path}: descriptors shape {descriptors.shape}, "
            f"expected (N, {channels})"
        )
    if backbone is not None and made_for is not None and made_for != backbone:
        raise InputError(
            f"centroids file {path}: made for backbone {made_for}, expected {backbone}"
        )
    if attention is not None and source != centroid_source(attention):
        raise InputError(
            f"centroids file {path}: sampled through {source}, expected "
            f"{centroid_source(attention)} for attention {attention} (`icsa kmeans --model-spec`)"
        )
    for key, want in (made_with or {}).items():
        if key not in data.files:
            continue  # written before the key was recorded
        found = data[key].tolist()
        if found != (list(want) if isinstance(want, (tuple, list)) else want):
            raise InputError(
                f"centroids file {path}: made with {key}={found!r}, expected {want!r}; rerun "
                "`icsa kmeans` for this model"
            )
    return centroids, descriptors
