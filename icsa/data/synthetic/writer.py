"""Plan a city (world, splits, poses, appearances) and write it in the NetVLAD layout.

Everything random is drawn here, in the main process, from Generators spawned from the seed;
rendering a job is then a pure function of the job, so the image bytes do not depend on the
number of worker processes or the order they finish in.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from icsa.data.dbstruct import DbStruct
from icsa.data.synthetic import time_machine
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
from icsa.utils import available_cpus

POS_DIST_THR = 25.0
TRAIN_POS_DIST_THR = 10.0  # NetVLAD's nonTrivPosDistSqThr = 100
# Pittsburgh-like city: the draw that once chose a capture time per street edge is kept so that
# this city's images stay byte-identical to earlier versions (the regression baseline).
_LEGACY_EDGE_DRAWS = 3


@dataclass(frozen=True)
class Job:
    path: str  # relative to the output root
    city: int  # index into the list of worlds (a TokyoTM-role city has one world per year)
    camera: Camera
    appearance: Appearance


@dataclass
class SplitPlan:
    mat: str  # .mat path relative to the output root
    db: DbStruct


def cameras(p: Poses) -> list[Camera]:
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
) -> tuple[list[World], list[SplitPlan], list[Job]]:
    """The worlds of one city (one per capture year in the TokyoTM role), its splits and jobs.

    ``city`` is the index of this city's first world in the list the renderer gets.
    """
    tokyo = style.name == "tokyo"
    h = s.headings_per_place * (s.tokyo_capture_times if tokyo else 1)
    n_places = [-(-n_db // h) for n_db, _ in counts]
    nx, ny = city_size(style, n_places, s)
    places = street_places(style, nx, ny, s.place_spacing, rng)
    areas = split_areas(places, n_places, s.split_gap)
    while areas is None:  # jitter moved a place across a boundary: one more block column
        nx += 1
        places = street_places(style, nx, ny, s.place_spacing, rng)
        areas = split_areas(places, n_places, s.split_gap)
    world = build_world(style, nx, ny, s.template_count, s.tint_jitter, s.sign_fraction, rng)
    if tokyo:
        worlds = time_machine.year_worlds(world, s.tokyo_change_fraction, rng)
    else:
        worlds = [world]
        rng.integers(_LEGACY_EDGE_DRAWS, size=places.edge.max() + 1)
    origin = np.asarray(style.utm_origin)
    plans, jobs = [], []
    place_base = q_base = 0
    for name, (n_db, n_q), idx in zip(split_names, counts, areas):
        which = name.rsplit("_", 1)[1]
        if tokyo:
            split = time_machine.plan_split(places, idx, n_db, n_q, s, style, rng, place_base)
            jobs += [Job(path, city + year, cam, app) for path, year, cam, app in split.jobs]
            rows = split.query_rows
            db = split_struct(
                which, split.db_names, split.db_xy + origin, [split.db_names[i] for i in rows],
                split.db_xy[rows] + origin, split.db_times, split.db_times[rows],
            )  # fmt: skip
        else:
            db, split_jobs = _plan_pittsburgh_split(
                places, idx, n_db, n_q, s, style, rng, city, place_base, q_base, which, origin
            )
            jobs += split_jobs
        plans.append(SplitPlan(f"datasets/{name}.mat", db))
        place_base += len(idx)
        q_base += n_q
    return worlds, plans, jobs


def _plan_pittsburgh_split(
    places, idx, n_db, n_q, s, style, rng, city, place_base, q_base, which, origin
) -> tuple[DbStruct, list[Job]]:
    """Street View database (daytime) and separately taken queries (any time of day)."""
    db = database_poses(places, idx, n_db, s)
    q = query_poses(places, idx, n_q, s, style, rng)
    db_names, q_names, jobs = [], [], []
    for i, cam in enumerate(cameras(db)):
        pid = place_base + int(np.searchsorted(idx, db.place[i]))
        rel = f"{pid // 1000:03d}/{pid:06d}_pitch1_yaw{db.yaw[i] + 1}.jpg"
        db_names.append(rel)
        jobs.append(Job(rel, city, cam, db_appearance(rng, s)))
    for i, cam in enumerate(cameras(q)):
        qid = q_base + i
        app = query_appearance(rng, s, style.sun_azimuth_deg)
        rel = f"queries_real/{qid // 1000:03d}/{qid:06d}_pitch1_yaw{q.yaw[i] + 1}.jpg"
        q_names.append(rel.removeprefix("queries_real/"))
        jobs.append(Job(rel, city, cam, app))
    return split_struct(which, db_names, db.xy + origin, q_names, q.xy + origin), jobs


def split_struct(which, db_names, db_utm, q_names, q_utm, db_times=None, q_times=None):
    """The dbStruct of a synthetic split: NetVLAD's radii, counts from the lists."""
    return DbStruct.from_lists(
        which, db_names, db_utm, q_names, q_utm, POS_DIST_THR, TRAIN_POS_DIST_THR, db_times, q_times
    )


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
    """Render processes when none are asked for: two, or fewer where fewer CPUs may be used."""
    return min(2, available_cpus())
