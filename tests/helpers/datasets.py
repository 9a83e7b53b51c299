"""Tiny datasets: any NetVLAD layout with solid-colour images (``make_dataset``), and a
pitts30k test split of random-noise images for the analysis and figure tests
(``make_noise_test_split``)."""

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


def make_noise_test_split(root: Path, num_db: int) -> DbStruct:
    """pitts30k-test under ``root``: ``num_db`` random-noise 48×64 database PNGs 20 m apart along
    a line (``000/db{i}.png``) and 4 noise queries (``queries_real/q{i}.png``) at (0, 3),
    (40, 0), (95, 0) and (500, 0), the last far from every database image."""
    rng = np.random.default_rng(0)
    db_names = [f"000/db{i}.png" for i in range(num_db)]
    q_names = [f"q{i}.png" for i in range(4)]
    for sub, names in (("", db_names), ("queries_real", q_names)):
        for name in names:
            path = root / sub / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    db_utm = np.stack([np.arange(num_db) * 20.0, np.zeros(num_db)], axis=1)
    q_utm = np.array([[0.0, 3.0], [40.0, 0.0], [95.0, 0.0], [500.0, 0.0]])
    db = DbStruct("test", db_names, db_utm, q_names, q_utm, num_db, 4, 25.0, 625.0, 100.0)
    write_dbstruct(root / "datasets" / "pitts30k_test.mat", db)
    return db
