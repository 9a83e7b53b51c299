"""The GSV-Cities role of the synthetic city: places with ids, K images each, two "cities".

GSV-Cities (amaralibey/gsv-cities; icsa.data.gsv_cities reads it) is a set of places, each
photographed several times over the years from about the same spot; a training batch takes P
places × K images and the place id is the label. The role written here has that layout
(``Dataframes/<city>.csv``, ``Images/<city>/<name>.jpg`` named as gsv-cities' ``get_img_name``):
``gsv_places`` places of a world of its own (a fifth Generator spawned from the seed, so the
other roles stay byte-identical), at least :data:`MIN_PLACE_DISTANCE_M` apart (GSV-Cities keeps
100 m; here a little more than the 25 m positive radius, so the city stays small), each seen
``gsv_images_per_place`` times looking the same way, each time with its own small offset,
heading jitter and a capture's appearance (colour cast, exposure, blur: the query appearance of
the city settings). The places are dealt alternately to two cities whose place ids both start
at 0, so a reader must tell place 0 of one city from place 0 of the other, as in the real data.
Latitude and longitude come from the local metres by a flat-earth step from Pittsburgh's
coordinates: they are labels, not survey positions.
"""

from __future__ import annotations

import math

import numpy as np

from icsa.data.gsv_cities import GsvImage
from icsa.data.synthetic.appearance import query_appearance
from icsa.data.synthetic.poses import Places, Poses, city_size, street_places
from icsa.data.synthetic.settings import CitySettings
from icsa.data.synthetic.world import PITTSBURGH, World, build_world
from icsa.data.synthetic.writer import Job, cameras

CITIES = ("Eastbank", "Westbank")
MIN_PLACE_DISTANCE_M = 30.0
ORIGIN_LATLON = (40.4406, -79.9959)  # local (0, 0): downtown Pittsburgh
METRES_PER_DEGREE = 111_320.0
_PANOID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def spread_places(places: Places, count: int, min_distance: float) -> np.ndarray | None:
    """Indices of ``count`` places, each at least ``min_distance`` from those before it,
    chosen greedily west to east; None when the streets hold fewer."""
    order = np.lexsort((places.xy[:, 1], places.xy[:, 0]))
    chosen: list[int] = []
    for i in order:
        if all(np.hypot(*(places.xy[i] - places.xy[j])) >= min_distance for j in chosen):
            chosen.append(int(i))
            if len(chosen) == count:
                return np.asarray(chosen)
    return None


def _latlon(xy: np.ndarray) -> tuple[float, float]:
    lat0, lon0 = ORIGIN_LATLON
    lat = lat0 + xy[1] / METRES_PER_DEGREE
    lon = lon0 + xy[0] / (METRES_PER_DEGREE * math.cos(math.radians(lat0)))
    return round(lat, 6), round(lon, 6)


def place_views(places: Places, idx: np.ndarray, k: int, s: CitySettings,
                rng: np.random.Generator) -> Poses:  # fmt: skip
    """K views of each place of ``idx``: one heading per place, each view within
    ``query_offset_max`` metres of it, heading jittered by ``query_heading_jitter_deg``."""
    place = np.repeat(idx, k)
    n = len(place)
    yaw = np.repeat(rng.integers(s.headings_per_place, size=len(idx)), k)
    r = s.query_offset_max * np.sqrt(rng.random(n))
    phi = rng.uniform(0.0, 2 * np.pi, n)
    xy = places.xy[place] + np.stack([r * np.cos(phi), r * np.sin(phi)], 1)
    jitter = rng.uniform(-s.query_heading_jitter_deg, s.query_heading_jitter_deg, n)
    heading = np.mod(places.street_deg[place] + yaw * 360.0 / s.headings_per_place + jitter, 360)
    fov = rng.uniform(*s.query_fov_range, n)
    return Poses(xy, heading, fov, yaw, place)


def plan_gsv(
    s: CitySettings, rng: np.random.Generator, city: int
) -> tuple[World, dict[str, list[GsvImage]], list[Job]]:
    """The role's world, each city's dataframe rows and the render jobs (paths relative to the
    role's root); ``city`` is the index of its world in the list the renderer gets."""
    nx, ny = city_size(PITTSBURGH, [s.gsv_places * 6], s)
    places = street_places(PITTSBURGH, nx, ny, s.place_spacing, rng)
    idx = spread_places(places, s.gsv_places, MIN_PLACE_DISTANCE_M)
    while idx is None:
        nx += 1
        places = street_places(PITTSBURGH, nx, ny, s.place_spacing, rng)
        idx = spread_places(places, s.gsv_places, MIN_PLACE_DISTANCE_M)
    world = build_world(PITTSBURGH, nx, ny, s.template_count, s.tint_jitter, s.sign_fraction, rng)
    k = s.gsv_images_per_place
    views = place_views(places, idx, k, s, rng)
    rows: dict[str, list[GsvImage]] = {name: [] for name in CITIES}
    jobs = []
    for i, cam in enumerate(cameras(views)):
        p = i // k  # the place's number in idx
        city_id = CITIES[p % len(CITIES)]
        lat, lon = _latlon(views.xy[i])
        image = GsvImage(
            place_id=p // len(CITIES),
            year=int(rng.integers(2007, 2022)),
            month=int(rng.integers(1, 13)),
            northdeg=int(round(90.0 - float(views.heading_deg[i]))) % 360,
            city_id=city_id,
            lat=lat,
            lon=lon,
            panoid="".join(rng.choice(list(_PANOID_CHARS), 22)),
        )
        rows[city_id].append(image)
        app = query_appearance(rng, s, PITTSBURGH.sun_azimuth_deg)
        jobs.append(Job(f"Images/{image.name()}", city, cam, app))
    return world, rows, jobs
