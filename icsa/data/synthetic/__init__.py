"""The embedded synthetic city: a procedural street world, in the NetVLAD or benchmark layout.

``generate(out_dir, seed)`` writes ``out_dir/pitts30k/`` (a Pittsburgh-like city, train/val/test
from disjoint areas) and ``out_dir/tokyotm/`` (a differently styled city in the TokyoTM role: a
time machine captured in several years whose queries are database images, ``time_machine.py``),
each with its ``datasets/*.mat`` dbStructs, when ``tokyo247_db``/``tokyo247_q`` are set
``out_dir/tokyo247/`` (the Tokyo 24/7 role, ``tokyo247.py``), and when ``gsv_places`` is set
``out_dir/gsvcities/`` (the GSV-Cities role in its own layout, ``gsv.py``), so that real and
synthetic data share one code path; ``layout="benchmark"`` writes the same city as
benchmark-named image folders (:mod:`icsa.data.convert`). Same seed and settings give
byte-identical files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from icsa.data.convert import UTM_ZONES, in_benchmark_order, netvlad_to_benchmark
from icsa.data.dbstruct import write_dbstruct
from icsa.data.gsv_cities import DATAFRAMES, GsvImage, write_city
from icsa.data.gsv_cities import SPLIT as GSV_SPLIT
from icsa.data.layouts import WRITABLE_LAYOUTS, check_layout
from icsa.data.synthetic.gsv import plan_gsv
from icsa.data.synthetic.settings import CitySettings
from icsa.data.synthetic.tokyo247 import plan_tokyo247
from icsa.data.synthetic.world import PITTSBURGH, TOKYO, World
from icsa.data.synthetic.writer import Job, SplitPlan, default_workers, plan_city, render_all
from icsa.errors import InputError
from icsa.io import process_alive

__all__ = ["CitySettings", "MANIFEST", "generate", "plan_cities"]

MANIFEST = "synthetic.json"  # written last; marks a folder as a complete synthetic city
GSV_ROLE = "gsvcities"  # the GSV-Cities role's folder and dataset name

log = logging.getLogger(__name__)


def plan_cities(
    seed: int, s: CitySettings
) -> tuple[list[World], dict[str, list[SplitPlan]], list[Job], dict[str, list[GsvImage]]]:
    """The cities' worlds, dbStructs per dataset, render jobs (paths relative to out_dir) and
    the GSV-Cities role's dataframe rows per city (none while the role is off).

    Each city draws from its own Generator spawned from ``seed``, so changing the TokyoTM-role
    sizes leaves the Pittsburgh-like city unchanged.
    """
    # Children are fixed by their index: a third one (Tokyo 24/7) and a fourth (GSV-Cities)
    # leave the first two as they were.
    children = np.random.SeedSequence(int(seed)).spawn(4)
    rng_pitts, rng_tokyo, rng_247, rng_gsv = (np.random.default_rng(c) for c in children)
    w_p, plans_p, jobs_p = plan_city(
        PITTSBURGH, ["pitts30k_train", "pitts30k_val", "pitts30k_test"],
        [(s.train_db, s.train_q), (s.val_db, s.val_q), (s.test_db, s.test_q)], s, rng_pitts, 0,
    )  # fmt: skip
    w_t, plans_t, jobs_t = plan_city(
        TOKYO, ["tokyoTM_train", "tokyoTM_val"],
        [(s.tokyo_train_db, s.tokyo_train_q), (s.tokyo_val_db, s.tokyo_val_q)], s, rng_tokyo,
        len(w_p),
    )  # fmt: skip
    jobs = [replace(j, path=f"pitts30k/{j.path}") for j in jobs_p]
    jobs += [replace(j, path=f"tokyotm/{j.path}") for j in jobs_t]
    # Rows in the order the benchmark layout reads them (sorted file names), so that the city
    # gives the same splits, hence the same training and metrics, in either layout.
    plans = {
        dataset: [replace(pl, db=in_benchmark_order(pl.db, UTM_ZONES[dataset])) for pl in pls]
        for dataset, pls in (("pitts30k", plans_p), ("tokyotm", plans_t))
    }
    worlds = [*w_p, *w_t]
    if s.tokyo247_db:  # rows stay panorama by panorama (the panorama rule needs them so)
        world, plan, jobs_247 = plan_tokyo247(s, rng_247, len(worlds))
        worlds.append(world)
        plans["tokyo247"] = [plan]
        jobs += [replace(j, path=f"tokyo247/{j.path}") for j in jobs_247]
    gsv_rows: dict[str, list[GsvImage]] = {}
    if s.gsv_places:
        world, gsv_rows, jobs_gsv = plan_gsv(s, rng_gsv, len(worlds))
        worlds.append(world)
        jobs += [replace(j, path=f"{GSV_ROLE}/{j.path}") for j in jobs_gsv]
    return worlds, plans, jobs, gsv_rows


def sweep_leftovers(out: Path) -> list[Path]:
    """Remove the folders ``.<out name>.tmp-<pid>`` / ``.old-<pid>`` beside ``out`` whose writer
    no longer runs (a kill -9 runs no cleanup); return them. A live writer's are left alone. The
    pid is checked on this host: one machine writes a city folder."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(?:tmp|old)-([0-9]+)")
    stale = []
    for path in sorted(out.parent.iterdir()) if out.parent.is_dir() else []:
        match = pattern.fullmatch(path.name)
        writer = int(match[1]) if match else os.getpid()
        if path.is_dir() and writer != os.getpid() and not process_alive(writer):
            shutil.rmtree(path, ignore_errors=True)
            log.info("%s: removed, left by process %d that no longer runs", path, writer)
            stale.append(path)
    return stale


def generate(
    out_dir: str | os.PathLike,
    seed: int,
    settings: CitySettings | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    layout: str = "netvlad",
) -> dict[str, Any]:
    """Render both cities into ``out_dir`` in ``layout`` (netvlad: ``datasets/*.mat`` and image
    folders; benchmark: ``images/<split>/{database,queries}/@…@.jpg``) and return a summary.

    The files are written into a temporary sibling folder that replaces ``out_dir`` only when
    everything succeeded; such folders of killed writers are swept first. An existing
    ``out_dir`` is replaced only if it is empty or a previous synthetic city (it holds
    ``synthetic.json``); anything else is refused.
    """
    start = time.perf_counter()
    s = settings if settings is not None else CitySettings()
    out = Path(out_dir)
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())
    ):
        raise InputError(
            f"{out}: exists and is not a synthetic city (no {MANIFEST}); expected a new or empty "
            "folder — remove it or choose another --out"
        )
    check_layout(layout, WRITABLE_LAYOUTS)
    if layout == "benchmark" and s.tokyo247_db:
        raise InputError(
            "synthetic city: the Tokyo 24/7 role (tokyo247_db/tokyo247_q) is written in the "
            "netvlad layout only (its panorama rule reads database rows in panorama order); "
            "expected layout netvlad or tokyo247_db = tokyo247_q = 0"
        )
    worlds, plans, jobs, gsv_rows = plan_cities(seed, s)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        render_all(jobs, worlds, tmp, s, workers or default_workers(), progress)
        splits = {}
        for dataset, dataset_plans in plans.items():
            for plan in dataset_plans:
                write_dbstruct(tmp / dataset / plan.mat, plan.db)
                name = f"{dataset}-{plan.db.which_set}"
                splits[name] = {"num_db": plan.db.num_db, "num_q": plan.db.num_q}
        if layout == "benchmark":
            for dataset in plans:
                netvlad = tmp / f".{dataset}.netvlad"
                (tmp / dataset).rename(netvlad)
                netvlad_to_benchmark(netvlad, dataset, tmp / dataset, progress=False)
                shutil.rmtree(netvlad)  # the images live on as hard links (or copies)
        for city, rows in gsv_rows.items():  # its own layout whatever `layout` is
            write_city(tmp / GSV_ROLE / DATAFRAMES / f"{city}.csv", rows)
        if gsv_rows:
            count = sum(len(rows) for rows in gsv_rows.values())
            splits[f"{GSV_ROLE}-{GSV_SPLIT}"] = {"num_db": count, "num_q": 0}
        manifest = {"seed": int(seed), "settings": s.to_dict(), "splits": splits}
        if layout != "netvlad":  # older cities' manifests stay byte-identical
            manifest["layout"] = layout
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "out": str(out),
        "seed": int(seed),
        "images": len(jobs),
        "splits": splits,
        "seconds": round(time.perf_counter() - start, 2),
    }
