"""The TokyoTM role: a time machine of one city, captured in several years.

TokyoTM (Arandjelović et al., CVPR 2016) is built from Google Street View Time Machine: each
place has panoramas from several capture dates, and its query set is made *of its own database
images*. Evaluation therefore removes, for each query, the database images of its own capture
time from the ranking (``icsa.evaluate.recall``), and training positives come from another time.
This module plans that structure for the synthetic city:

- every place of a split is captured in ``tokyo_capture_times`` of the four ``CAPTURE_YEARS``
  (drawn per place), each capture a few metres from the others (``tokyo_capture_offset``) with
  its own heading jitter, ``headings_per_place`` views per capture;
- a year has its own look: sun direction and colour cast (seasons), and a renovated city
  (``world.renovate``: repainted facades, new, changed or removed signs), cumulative over the
  years; every image has its own parked cars and passers-by;
- the queries are ``tokyo_*_q`` database images drawn without replacement: same file, position
  and capture time, so each query's same-time twin is in the database and the time rule decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icsa.data.synthetic.appearance import db_appearance
from icsa.data.synthetic.poses import Places
from icsa.data.synthetic.render import Camera
from icsa.data.synthetic.settings import MAX_CAPTURE_TIMES, CitySettings
from icsa.data.synthetic.world import Style, World, renovate

# (capture date as yyyymmdd, sun azimuth offset in degrees, colour cast): four "years".
CAPTURE_YEARS = (
    (20090701, 20.0, (1.05, 1.0, 0.92)),  # summer
    (20110401, -60.0, (0.95, 1.0, 1.05)),  # spring, cool light
    (20130101, 140.0, (1.0, 0.97, 1.0)),  # winter, low sun from the other side
    (20141001, 75.0, (1.08, 0.98, 0.88)),  # autumn, warm
)
assert len(CAPTURE_YEARS) == MAX_CAPTURE_TIMES
HEADING_JITTER_DEG = 8.0  # a capture's panorama is not cut at exactly the same yaws


def year_worlds(world: World, fraction: float, rng: np.random.Generator) -> list[World]:
    """The city as captured in each of ``CAPTURE_YEARS``: renovations accumulate over time."""
    worlds = [world]
    for _ in CAPTURE_YEARS[1:]:
        worlds.append(renovate(worlds[-1], fraction, rng))
    return worlds


@dataclass
class TimeMachineSplit:
    db_names: list[str]  # relative to images/
    db_xy: np.ndarray  # [N, 2] local metres
    db_times: np.ndarray  # [N] capture dates
    query_rows: np.ndarray  # [M] database rows that are the queries, increasing
    jobs: list[tuple[str, int, Camera, object]]  # (path, year index, camera, appearance)


def plan_split(
    places: Places,
    idx: np.ndarray,
    n_db: int,
    n_q: int,
    s: CitySettings,
    style: Style,
    rng: np.random.Generator,
    place_base: int,
) -> TimeMachineSplit:
    """Database captures of the places ``idx`` (truncated to ``n_db`` images) and the queries."""
    h, times = s.headings_per_place, s.tokyo_capture_times
    names, xy, dates, jobs = [], [], [], []
    for local, place in enumerate(idx):
        years = np.sort(rng.choice(len(CAPTURE_YEARS), size=times, replace=False))
        r = s.tokyo_capture_offset * np.sqrt(rng.random(times))
        phi = rng.uniform(0.0, 2 * np.pi, times)
        pos = places.xy[place] + r[:, None] * np.stack([np.cos(phi), np.sin(phi)], 1)
        jitter = rng.uniform(-HEADING_JITTER_DEG, HEADING_JITTER_DEG, times)
        # Yaw-major order: when n_db cuts the last place short, it keeps several years.
        for yaw in range(h):
            for t, year in enumerate(years):
                if len(names) == n_db:
                    break
                date, sun, gain = CAPTURE_YEARS[year]
                heading = float(np.mod(places.street_deg[place] + yaw * 360.0 / h + jitter[t], 360))
                occluders = int(rng.integers(0, s.tokyo_occluders_max + 1))
                app = db_appearance(rng, s, style.sun_azimuth_deg + sun, gain, occluders)
                name = f"db/{date}/{place_base + local:06d}_yaw{yaw + 1}.jpg"
                camera = Camera(float(pos[t, 0]), float(pos[t, 1]), heading, float(s.db_fov_deg))
                names.append(name)
                xy.append(pos[t])
                dates.append(date)
                jobs.append((f"images/{name}", int(year), camera, app))
    query_rows = np.sort(rng.choice(len(names), size=n_q, replace=False))
    return TimeMachineSplit(
        names, np.asarray(xy, dtype=np.float64).reshape(-1, 2),
        np.asarray(dates, dtype=np.float64), query_rows, jobs,
    )  # fmt: skip
