"""Nordland's frame numbers, read from benchmark-layout names, for the frame-tolerance policies.

gmberton/VPR-datasets-downloader's ``download_nordland.py`` writes Nordland in the benchmark
layout as ``@0@<north>@@@@@<frame>@@@@@@@@.jpg``: the frame number sits in the ``pano_id``
field, and the dummy northing (25/10.5 m per frame) makes ±10 frames fall within 25 m. File
names sort as text, so the sorted order is not the frame order; the frame-tolerance policies
(:mod:`icsa.evaluate.policy`, ``nordland1``/``nordland10``) therefore read the numbers here.
"""

from __future__ import annotations

import numpy as np

from icsa.data.benchmark import parse_name
from icsa.data.layouts import PlaceSplit
from icsa.errors import InputError

FRAME_FIELD = "pano_id"  # where download_nordland.py writes the frame number


def frame_numbers(names: list[str], where: str) -> np.ndarray:
    """The integer ``pano_id`` field of each benchmark name (InputError naming the first that
    has none)."""
    out = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        value = getattr(parse_name(name), FRAME_FIELD)
        try:
            out[i] = int(value)
        except ValueError:
            raise InputError(
                f"{where}/{name}: {FRAME_FIELD} field = {value!r}, expected the frame number "
                "(as gmberton/VPR-datasets-downloader's download_nordland.py writes it) for a "
                "frame-tolerance policy"
            ) from None
    return out


def split_frames(split: PlaceSplit) -> tuple[np.ndarray, np.ndarray]:
    """``(database frames, query frames)`` of a benchmark-layout split."""
    if split.layout != "benchmark":
        raise InputError(
            f"{split.source}: a {split.layout}-layout split has no frame numbers; expected a "
            "benchmark-layout Nordland (frame number in each name's pano_id field) for a "
            "frame-tolerance policy"
        )
    return (
        frame_numbers(split.db.db_images, f"{split.source}/database"),
        frame_numbers(split.db.q_images, f"{split.source}/queries"),
    )
