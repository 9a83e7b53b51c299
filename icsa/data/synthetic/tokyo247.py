"""The Tokyo 24/7 role of the synthetic city: daytime panoramas, queries by day, sunset, night.

Tokyo 24/7 (Torii et al. 2015; evaluated by NetVLAD beside Pitts30k) has a database of
Street View panoramas, each cut into 12 views 30° apart, and 315 queries taken with phones by
day, at sunset and at night; Recall@N counts panoramas, not views (``icsa.evaluate.recall``:
``panorama_groups``, 12 consecutive database rows per panorama). The role written here has the
same layout (``datasets/tokyo247.mat``, ``images/``, ``query/``), database rows panorama by
panorama, and its own city (a fourth Generator spawned from the seed, so the other roles are
unchanged). It exists so that the paper-scale configuration can be rehearsed end to end,
table8 included, without the real data (config/rehearsal.yaml).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from icsa.data.synthetic.appearance import db_appearance, query_appearance
from icsa.data.synthetic.poses import (
    city_size,
    database_poses,
    query_poses,
    split_areas,
    street_places,
)
from icsa.data.synthetic.settings import CitySettings
from icsa.data.synthetic.world import TOKYO, World, build_world
from icsa.data.synthetic.writer import Job, SplitPlan, cameras, split_struct

VIEWS = 12  # cutouts per panorama; icsa.evaluate.recall.TOKYO247_CUTOUTS (tested equal)
MAT = "datasets/tokyo247.mat"


def plan_tokyo247(
    s: CitySettings, rng: np.random.Generator, city: int
) -> tuple[World, SplitPlan, list[Job]]:
    """The role's world, its test split and the render jobs (paths relative to its root);
    ``city`` is the index of its world in the list the renderer gets."""
    n_places = -(-s.tokyo247_db // VIEWS)
    nx, ny = city_size(TOKYO, [n_places], s)
    places = street_places(TOKYO, nx, ny, s.place_spacing, rng)
    areas = split_areas(places, [n_places], s.split_gap)
    while areas is None:  # jitter moved a place across a boundary: one more block column
        nx += 1
        places = street_places(TOKYO, nx, ny, s.place_spacing, rng)
        areas = split_areas(places, [n_places], s.split_gap)
    world = build_world(TOKYO, nx, ny, s.template_count, s.tint_jitter, s.sign_fraction, rng)
    idx = areas[0]
    # Rows panorama by panorama: database_poses repeats each place VIEWS times in yaw order.
    db = database_poses(places, idx, n_places * VIEWS, replace(s, headings_per_place=VIEWS))
    q = query_poses(places, idx, s.tokyo247_q, s, TOKYO, rng)
    by_time = replace(s, night_fraction=1 / 3, dusk_fraction=1 / 3)  # day, sunset, night
    db_names, q_names, jobs = [], [], []
    for place, view, cam in zip(db.place, db.yaw, cameras(db)):
        name = f"{int(place):05d}/{int(place):05d}_{int(view):02d}.jpg"
        db_names.append(name)
        jobs.append(Job(f"images/{name}", city, cam, db_appearance(rng, s)))
    for i, cam in enumerate(cameras(q)):
        q_names.append(f"{i:05d}.jpg")
        jobs.append(Job(f"query/{i:05d}.jpg", city, cam,
                        query_appearance(rng, by_time, TOKYO.sun_azimuth_deg)))  # fmt: skip
    origin = np.asarray(TOKYO.utm_origin)
    struct = split_struct("test", db_names, db.xy + origin, q_names, q.xy + origin)
    return world, SplitPlan(MAT, struct), jobs
