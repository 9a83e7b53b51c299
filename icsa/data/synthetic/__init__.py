"""The embedded synthetic city: a procedural street world rendered in the NetVLAD layout.

``generate(out_dir, seed)`` writes ``out_dir/pitts30k/`` (a Pittsburgh-like city, train/val/test
from disjoint areas) and ``out_dir/tokyotm/`` (a differently styled city with capture times, in
the TokyoTM role), each with its ``datasets/*.mat`` dbStructs, so that real and synthetic data
share one code path (DESIGN §4). Same seed and settings give byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from icsa.data.dbstruct import write_dbstruct
from icsa.data.synthetic.settings import CitySettings
from icsa.data.synthetic.world import PITTSBURGH, TOKYO
from icsa.data.synthetic.writer import default_workers, plan_city, render_all
from icsa.errors import InputError

__all__ = ["CitySettings", "MANIFEST", "generate"]

MANIFEST = "synthetic.json"  # written last; marks a folder as a complete synthetic city


def generate(
    out_dir: str | os.PathLike,
    seed: int,
    settings: CitySettings | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Render both cities into ``out_dir`` and return a summary (counts, seconds).

    The files are written into a temporary sibling folder that replaces ``out_dir`` only when
    everything succeeded. An existing ``out_dir`` is replaced only if it is empty or a previous
    synthetic city (it holds ``synthetic.json``); anything else is refused.
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
    ss = np.random.SeedSequence(int(seed))
    rng_pitts, rng_tokyo = (np.random.default_rng(c) for c in ss.spawn(2))
    w_p, plans_p, jobs_p = plan_city(
        PITTSBURGH,
        ["pitts30k_train", "pitts30k_val", "pitts30k_test"],
        [(s.train_db, s.train_q), (s.val_db, s.val_q), (s.test_db, s.test_q)],
        s,
        rng_pitts,
        0,
    )
    w_t, plans_t, jobs_t = plan_city(
        TOKYO,
        ["tokyoTM_train", "tokyoTM_val"],
        [(s.tokyo_train_db, s.tokyo_train_q), (s.tokyo_val_db, s.tokyo_val_q)],
        s,
        rng_tokyo,
        1,
    )
    jobs = [j.__class__(f"pitts30k/{j.path}", j.city, j.camera, j.appearance) for j in jobs_p]
    jobs += [j.__class__(f"tokyotm/{j.path}", j.city, j.camera, j.appearance) for j in jobs_t]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        render_all(jobs, [w_p, w_t], tmp, s, workers or default_workers(), progress)
        splits = {}
        for dataset, plans in (("pitts30k", plans_p), ("tokyotm", plans_t)):
            for plan in plans:
                write_dbstruct(tmp / dataset / plan.mat, plan.db)
                name = f"{dataset}-{plan.db.which_set}"
                splits[name] = {"num_db": plan.db.num_db, "num_q": plan.db.num_q}
        manifest = {"seed": int(seed), "settings": s.to_dict(), "splits": splits}
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
