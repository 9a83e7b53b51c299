"""Plan a city (world, splits, poses, appearances) and write it in the NetVLAD layout.

Everything random is drawn here, in the main process, from Generators spawned from the seed;
rendering a job is then a pure function of the job, so the image bytes do not depend on the
number of worker processes or the order they finish in.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from icsa.data.dbstruct import DbStruct
from icsa.data.synthetic.appearance import (
    Appearance,
    apply_appearance,
    db_appearance,
    encode_jpeg,
    query_appearance,
)
from icsa.data.synthetic.poses import (
    Poses,
    city_size,
    database_poses,
    query_poses,
    split_areas,
    street_places,
)
from icsa.data.synthetic.render import Camera, render
from icsa.data.synthetic.settings import CitySettings
from icsa.data.synthetic.world import Style, World, build_world

POS_DIST_THR = 25.0
NON_TRIV_POS_DIST_SQ_THR = 100.0
# TokyoTM role: the database comes from three capture times (each with its own sun and colour
# cast, like seasons), queries from any capture time that no database image within 25 m has.
TOKYO_DB_TIMES = {
    20090701: (20.0, (1.05, 1.0, 0.92)),
    20110401: (-60.0, (0.95, 1.0, 1.05)),
    20130101: (140.0, (1.0, 0.97, 1.0)),
}
TOKYO_EXTRA_TIME = 20141001


@dataclass(frozen=True)
class Job:
    path: str  # relative to the output root
    city: int
    camera: Camera
    appearance: Appearance


@dataclass
class SplitPlan:
    mat: str  # .mat path relative to the output root
    db: DbStruct


def _cameras(p: Poses) -> list[Camera]:
    return [
        Camera(float(x), float(y), float(h), float(f))
        for (x, y), h, f in zip(p.xy, p.heading_deg, p.fov_deg)
    ]


def plan_city(
    style: Style,
    split_names: list[str],
    counts: list[tuple[int, int]],
    s: CitySettings,
    rng: np.random.Generator,
    city: int,
) -> tuple[World, list[SplitPlan], list[Job]]:
    """The world of one city, its splits (dbStructs) and the render jobs of all its images."""
    h = s.headings_per_place
    n_places = [-(-n_db // h) for n_db, _ in counts]
    nx, ny = city_size(style, n_places, s)
    places = street_places(style, nx, ny, s.place_spacing, rng)
    areas = split_areas(places, n_places, s.split_gap)
    while areas is None:  # jitter moved a place across a boundary: one more block column
        nx += 1
        places = street_places(style, nx, ny, s.place_spacing, rng)
        areas = split_areas(places, n_places, s.split_gap)
    world = build_world(style, nx, ny, s.template_count, s.tint_jitter, s.sign_fraction, rng)
    tokyo = style.name == "tokyo"
    edge_time = np.asarray(list(TOKYO_DB_TIMES))[
        rng.integers(len(TOKYO_DB_TIMES), size=places.edge.max() + 1)
    ]
    origin = np.asarray(style.utm_origin)
    plans, jobs = [], []
    place_base = q_base = 0
    for name, (n_db, n_q), idx in zip(split_names, counts, areas):
        db = database_poses(places, idx, n_db, s)
        q = query_poses(places, idx, n_q, s, style, rng)
        db_names, q_names, db_ts, q_ts = [], [], None, None
        if tokyo:
            db_ts = edge_time[places.edge[db.place]].astype(np.float64)
            near = cKDTree(db.xy).query_ball_point(q.xy, POS_DIST_THR)
            q_ts = np.empty(n_q)
        for i, cam in enumerate(_cameras(db)):
            pid = place_base + int(np.searchsorted(idx, db.place[i]))
            if tokyo:
                sun, gain = TOKYO_DB_TIMES[int(db_ts[i])]
                rel = f"images/db/{int(db_ts[i])}/{pid:06d}_yaw{db.yaw[i] + 1}.jpg"
                app = db_appearance(rng, s, style.sun_azimuth_deg + sun, gain)
            else:
                rel = f"{pid // 1000:03d}/{pid:06d}_pitch1_yaw{db.yaw[i] + 1}.jpg"
                app = db_appearance(rng, s)
            db_names.append(rel.removeprefix("images/"))
            jobs.append(Job(rel, city, cam, app))
        for i, cam in enumerate(_cameras(q)):
            qid = q_base + i
            app = query_appearance(rng, s, style.sun_azimuth_deg)
            if tokyo:
                seen = {int(db_ts[j]) for j in near[i]}
                free = [t for t in TOKYO_DB_TIMES if t not in seen] + [TOKYO_EXTRA_TIME]
                q_ts[i] = free[rng.integers(len(free))]
                rel = f"images/query/{int(q_ts[i])}/{qid:06d}.jpg"
                q_names.append(rel.removeprefix("images/"))
            else:
                rel = f"queries_real/{qid // 1000:03d}/{qid:06d}_pitch1_yaw{q.yaw[i] + 1}.jpg"
                q_names.append(rel.removeprefix("queries_real/"))
            jobs.append(Job(rel, city, cam, app))
        place_base += len(idx)
        q_base += n_q
        which = name.rsplit("_", 1)[1]
        plans.append(
            SplitPlan(
                f"datasets/{name}.mat",
                DbStruct(
                    which_set=which,
                    db_images=db_names,
                    db_utm=db.xy + origin,
                    q_images=q_names,
                    q_utm=q.xy + origin,
                    num_db=n_db,
                    num_q=n_q,
                    pos_dist_thr=POS_DIST_THR,
                    pos_dist_sq_thr=POS_DIST_THR**2,
                    non_triv_pos_dist_sq_thr=NON_TRIV_POS_DIST_SQ_THR,
                    db_timestamps=db_ts,
                    q_timestamps=q_ts,
                ),
            )
        )
    return world, plans, jobs


# --- rendering (possibly in worker processes) ------------------------------------------------
_STATE: dict = {}


def _init_worker(worlds: list[World], root: Path, height: int, width: int) -> None:
    _STATE.update(worlds=worlds, root=root, height=height, width=width)


def render_job(job: Job, worlds: list[World], height: int, width: int) -> bytes:
    """The JPEG bytes of one job (pure: same job, same bytes)."""
    frame = render(worlds[job.city], job.camera, height, width, job.appearance.sun_azimuth_deg)
    image = apply_appearance(frame, job.appearance, job.camera.fov_deg)
    return encode_jpeg(image, job.appearance.jpeg_quality)


def _run(job: Job) -> int:
    data = render_job(job, _STATE["worlds"], _STATE["height"], _STATE["width"])
    (_STATE["root"] / job.path).write_bytes(data)
    return len(data)


def render_all(
    jobs: list[Job],
    worlds: list[World],
    root: Path,
    s: CitySettings,
    workers: int,
    progress: bool = True,
) -> None:
    """Write every job's JPEG under ``root`` (folders are created first)."""
    for folder in sorted({(root / j.path).parent for j in jobs}):
        folder.mkdir(parents=True, exist_ok=True)
    args = (worlds, root, s.image_height, s.image_width)
    bar = dict(total=len(jobs), desc="synthetic city", mininterval=5, disable=not progress)
    if workers <= 1:
        _init_worker(*args)
        for job in tqdm(jobs, **bar):
            _run(job)
        return
    # fork shares the worlds without pickling where it exists; spawn elsewhere.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _init_worker, args) as pool:
        for _ in tqdm(pool.imap_unordered(_run, jobs, chunksize=32), **bar):
            pass


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
