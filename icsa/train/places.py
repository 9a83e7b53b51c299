"""Places of a training split and the place-grouped batches of the multisimilarity regime.

GSV-Cities (amaralibey/gsv-cities, ``dataloaders/GSVCitiesDataset.py``) trains on *places*:
each a place id with at least ``min_img_per_place`` images; a batch is P places, each
contributing K images sampled at random (``img_per_place``), labelled by the place id. A split
that labels its images by place (the gsvcities layout, icsa.data.gsv_cities) gives its places
directly (:func:`places_from_labels`). A UTM split (pitts30k layout: a database and queries with
UTM positions) has no place ids, so there a place is a square cell of ``cell_m`` metres of the
UTM grid: every database image and query of the training split whose position falls in the cell
(:func:`places_from_utm`). Cells with fewer than K images are
dropped, as GSV-Cities drops places with fewer than ``min_img_per_place`` images. Like the
triplet regime's positives this is weak supervision (positions, not headings).

An image of a split is one integer: ``i < num_db`` is database image ``i``, ``i >= num_db`` is
query ``i - num_db``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icsa.errors import InputError


@dataclass(frozen=True)
class Places:
    """The places of a split: per place, its image numbers (sorted); ``dropped`` counts the
    cells with fewer than the images a batch takes of each place."""

    images: tuple[np.ndarray, ...]
    num_db: int
    dropped: int

    def __len__(self) -> int:
        return len(self.images)


def _group(keys: np.ndarray, num_db: int, min_images: int) -> Places:
    """Images with equal keys (one row per image) form a place; places of fewer than
    ``min_images`` images are dropped; places in key order."""
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = np.split(order, bounds) if len(order) else []
    kept = tuple(np.sort(g).astype(np.int64) for g in groups if len(g) >= min_images)
    return Places(images=kept, num_db=num_db, dropped=len(groups) - len(kept))


def places_from_labels(labels: np.ndarray, min_images: int) -> Places:
    """The places of a split whose database images carry place labels (it has no queries),
    keeping those with at least ``min_images`` images, as GSV-Cities' ``min_img_per_place``."""
    labels = np.asarray(labels, np.int64)
    return _group(labels[:, None], len(labels), min_images)


def places_from_utm(
    db_utm: np.ndarray, q_utm: np.ndarray, cell_m: float, min_images: int
) -> Places:
    """Group a split's database images and queries into ``cell_m`` UTM cells (places), keeping
    the cells with at least ``min_images`` images, in cell order."""
    coords = np.concatenate([np.asarray(db_utm, np.float64), np.asarray(q_utm, np.float64)])
    cells = np.floor(coords / float(cell_m)).astype(np.int64)
    return _group(cells, len(db_utm), min_images)


def require_places(places: Places, source: str, cell_m: float | None, k: int) -> None:
    """A batch needs two places at least (a negative pair); else an InputError saying why
    (``cell_m`` None: the places are the dataset's own)."""
    if len(places) < 2:
        own = cell_m is None
        where = "labelled places" if own else f"train.ms_place_cell_m={cell_m:g} m cells"
        fix = "fewer images per place" if own else "larger cells or fewer images per place"
        raise InputError(
            f"{source}: {len(places)} places with >= train.ms_images_per_place={k} images in "
            f"{where} ({places.dropped} have fewer); expected at least 2: use {fix}"
        )


def place_batches(
    places: Places, per_batch: int, per_place: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One epoch of batches: the places in a random order cut into groups of ``per_batch``
    (the last may be smaller, as GSV-Cities' ``drop_last=False``; a last group of one place,
    which has no negative pair, is dropped), and ``per_place`` images sampled without
    replacement from each. Returns ``(images [P, K], place numbers [P])`` per batch; all
    randomness from ``rng``."""
    order = rng.permutation(len(places))
    batches = []
    for start in range(0, len(order), per_batch):
        chosen = order[start : start + per_batch]
        if len(chosen) < 2:
            continue
        images = np.stack(
            [rng.choice(places.images[p], per_place, replace=False) for p in chosen]
        ).astype(np.int64)
        batches.append((images, chosen.astype(np.int64)))
    return batches
