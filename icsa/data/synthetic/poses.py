"""Camera poses: database places along the streets, split areas, and query poses.

Database (as Pittsburgh's Street View): a place every ``place_spacing`` metres along the
interior streets, ``headings_per_place`` evenly spaced yaws per place, the first along the
street. Splits take places in order of increasing easting, so each split is one compact area,
and ``split_gap`` metres of street are skipped between splits: no database image of one split
lies within 25 m of another split's. Queries sit near a database place of their own split
(uniform in a disc of radius ``query_offset_max``, kept on the road), look along one of the
database yaws with jitter, and have their own field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icsa.data.synthetic.settings import CitySettings
from icsa.data.synthetic.world import Style
from icsa.errors import InputError


@dataclass
class Places:
    xy: np.ndarray  # [P,2] local metres
    street_deg: np.ndarray  # [P] direction of the street (0 or 90)
    lateral: np.ndarray  # [P] signed offset from the street centre line
    edge: np.ndarray  # [P] street edge (between two intersections) the place lies on


@dataclass
class Poses:
    xy: np.ndarray  # [N,2]
    heading_deg: np.ndarray  # [N]
    fov_deg: np.ndarray  # [N]
    yaw: np.ndarray  # [N] index of the database yaw the heading is closest to
    place: np.ndarray  # [N] index into the split's places (the anchor for queries)


def street_places(
    style: Style, nx: int, ny: int, spacing: float, rng: np.random.Generator
) -> Places:
    """Places along all interior street edges (streets on the city border are skipped)."""
    px, py = style.block_pitch
    xy, street, edge = [], [], []
    segments = [((i * px, j * py), (1, 0), px) for j in range(1, ny) for i in range(1, nx - 1)]
    segments += [((i * px, j * py), (0, 1), py) for i in range(1, nx) for j in range(1, ny - 1)]
    for e, (start, direction, length) in enumerate(segments):
        t = np.arange(spacing / 2, length, spacing)
        xy.append(np.asarray(start) + t[:, None] * np.asarray(direction))
        street.append(np.full(t.size, 0.0 if direction[0] else 90.0))
        edge.append(np.full(t.size, e))
    xy_a = np.concatenate(xy)
    street_a = np.concatenate(street)
    lateral = rng.uniform(-1.0, 1.0, len(xy_a))  # the car is not exactly on the centre line
    normal = np.stack([-np.sin(np.radians(street_a)), np.cos(np.radians(street_a))], 1)
    return Places(xy_a + lateral[:, None] * normal, street_a, lateral, np.concatenate(edge))


def split_areas(places: Places, counts: list[int], gap: float) -> list[np.ndarray] | None:
    """Indices of ``counts[i]`` places per split, west to east, ``gap`` metres apart.

    Returns None when the city is too small (the caller enlarges it).
    """
    order = np.lexsort((places.xy[:, 1], places.xy[:, 0]))
    x = places.xy[order, 0]
    out, start = [], 0
    for n in counts:
        if start + n > len(order):
            return None
        out.append(np.sort(order[start : start + n]))
        start = int(np.searchsorted(x, x[start + n - 1] + gap, side="right"))
    return out


def database_poses(places: Places, idx: np.ndarray, count: int, s: CitySettings) -> Poses:
    """``headings_per_place`` yaws at each place of ``idx``, truncated to ``count`` images."""
    h = s.headings_per_place
    place = np.repeat(idx, h)[:count]
    yaw = np.tile(np.arange(h), len(idx))[:count]
    heading = np.mod(places.street_deg[place] + yaw * 360.0 / h, 360.0)
    return Poses(places.xy[place].copy(), heading, np.full(count, s.db_fov_deg), yaw, place)


def query_poses(
    places: Places,
    idx: np.ndarray,
    count: int,
    s: CitySettings,
    style: Style,
    rng: np.random.Generator,
) -> Poses:
    """Queries near random places of ``idx``; they stay on the road."""
    place = idx[rng.integers(len(idx), size=count)]
    r = s.query_offset_max * np.sqrt(rng.random(count))
    phi = rng.uniform(0.0, 2 * np.pi, count)
    along = r * np.cos(phi)
    limit = max(style.road_width / 2 - 0.5, 0.0)
    lateral = np.clip(places.lateral[place] + r * np.sin(phi), -limit, limit)
    ang = np.radians(places.street_deg[place])
    direction = np.stack([np.cos(ang), np.sin(ang)], 1)
    normal = np.stack([-np.sin(ang), np.cos(ang)], 1)
    centre = places.xy[place] - places.lateral[place][:, None] * normal
    xy = centre + along[:, None] * direction + lateral[:, None] * normal
    h = s.headings_per_place
    yaw = rng.integers(h, size=count)
    jitter = rng.uniform(-s.query_heading_jitter_deg, s.query_heading_jitter_deg, count)
    heading = np.mod(places.street_deg[place] + yaw * 360.0 / h + jitter, 360.0)
    fov = rng.uniform(*s.query_fov_range, count)
    return Poses(xy, heading, fov, yaw, place)


def city_size(style: Style, counts: list[int], s: CitySettings, ny: int = 5) -> tuple[int, int]:
    """The smallest ``nx`` (blocks west-east) whose interior streets hold all splits."""
    rng = np.random.default_rng(0)  # only counts matter here, not positions
    for nx in range(4, 400):
        if (
            split_areas(street_places(style, nx, ny, s.place_spacing, rng), counts, s.split_gap)
            is not None
        ):
            return nx + 1, ny  # one more block column so the last area has buildings east
    raise InputError(f"synthetic city: {sum(counts)} places do not fit in 400 blocks")
