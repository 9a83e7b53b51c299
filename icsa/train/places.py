"""Places of a training split and the place-grouped batches of the multisimilarity regime.

GSV-Cities (amaralibey/gsv-cities, ``dataloaders/GSVCitiesDataset.py``) trains on *places*:
each a place id with at least ``min_img_per_place`` images; a batch is P places, each
contributing K images sampled at random (``img_per_place``), labelled by the place id. A UTM
split (pitts30k layout: a database and queries with UTM positions) has no place ids, so here
a place is a square cell of ``cell_m`` metres of the UTM grid: every database image and query
of the training split whose position falls in the cell. Cells with fewer than K images are
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


def places_from_utm(
    db_utm: np.ndarray, q_utm: np.ndarray, cell_m: float, min_images: int
) -> Places:
    """Group a split's database images and queries into ``cell_m`` UTM cells (places), keeping
    the cells with at least ``min_images`` images, in cell order."""
    coords = np.concatenate([np.asarray(db_utm, np.float64), np.asarray(q_utm, np.float64)])
    cells = np.floor(coords / float(cell_m)).astype(np.int64)
    _, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = np.split(order, bounds) if len(order) else []
    kept = tuple(np.sort(g).astype(np.int64) for g in groups if len(g) >= min_images)
    return Places(images=kept, num_db=len(db_utm), dropped=len(groups) - len(kept))


def require_places(places: Places, source: str, cell_m: float, k: int) -> None:
    """A batch needs two places at least (a negative pair); else an InputError saying why."""
    if len(places) < 2:
        raise InputError(
            f"{source}: {len(places)} places with >= train.ms_images_per_place={k} images in "
            f"train.ms_place_cell_m={cell_m:g} m cells ({places.dropped} cells have fewer); "
            "expected at least 2: use larger cells or fewer images per place"
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
