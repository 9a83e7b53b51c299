"""A tiny dataset in any of the NetVLAD layouts, with solid-colour images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from icsa.data import LAYOUTS, DbStruct, write_dbstruct


def colour(i: int) -> tuple[int, int, int]:
    return (37 * i % 256, 91 * i % 256, 53 * i % 256)


def make_dataset(
    root: Path, dataset: str, sizes: dict[str, tuple[int, int]], hw: tuple[int, int] = (12, 16)
) -> dict[str, DbStruct]:
    """Write a tiny dataset in ``dataset``'s layout: solid-colour JPEGs and the .mat files."""
    layout = LAYOUTS[dataset]
    rng = np.random.default_rng(0)
    out = {}
    for s, (num_db, num_q) in sizes.items():
        tm = dataset == "tokyotm"
        db_names = [f"{s}/{i // 4:03d}/{i:06d}_db.jpg" for i in range(num_db)]
        q_names = [f"{s}/q/{i:06d}_q.jpg" for i in range(num_q)]
        for base, names, offset in ((layout.db_dir, db_names, 0), (layout.q_dir, q_names, 100)):
            for i, name in enumerate(names):
                path = root / base / name
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (hw[1], hw[0]), colour(i + offset)).save(path, quality=95)
        db = DbStruct(
            s, db_names, rng.uniform(0, 60, (num_db, 2)), q_names, rng.uniform(0, 60, (num_q, 2)),
            num_db, num_q, 25.0, 625.0, 100.0,
            rng.integers(0, 3, num_db).astype(float) if tm else None,
            rng.integers(0, 3, num_q).astype(float) if tm else None,
        )  # fmt: skip
        write_dbstruct(root / layout.mats[s], db)
        out[s] = db
    return out
