"""MSLS-val (Mapillary Street-Level Sequences) in its own layout, with the official query subset.

The MSLS archive (github.com/mapillary/mapillary_sls, README "Package structure") unpacks to

    train_val/<city>/{database,query}/{images/<key>.jpg, postprocessed.csv, raw.csv, ...}

whose ``postprocessed.csv`` holds each key's UTM ``easting``/``northing``. The validation cities
are ``cph`` and ``sf`` (``mapillary_sls/datasets/msls.py``, ``default_cities['val']``). The
evaluation people compare on (MixVPR, SALAD, BoQ, all through amaralibey/gsv-cities'
``dataloaders/val/MapillaryDataset.py``) does not rank every query: it reads four precomputed
lists, ``msls_val_dbImages.npy`` (database paths relative to the root), ``msls_val_qImages.npy``,
``msls_val_qIdx.npy`` (the official queries, 740 as the papers report, indices into qImages) and
``msls_val_pIdx.npy`` (each official query's positive database indices, from mapillary_sls's
``MSLS(mode='val')`` 25 m radius), and takes ``qImages[qIdx]`` as queries and ``pIdx`` as their
ground truth. This module reads exactly that, from the four files at the dataset root:

- split ``val``: every official query against the whole database (both cities);
- split ``val-<city>``: one city's official queries against that city's database images, the
  positives re-indexed (the per-city split; MSLS positives never cross a city).

The UTM positions come from the ``postprocessed.csv`` files (they feed mining and the dbStruct);
Recall@N uses the lists (policy ``index-lists``, :mod:`icsa.evaluate.policy`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from icsa.data.dbstruct import DbStruct
from icsa.data.ground_truth import check_positives, read_object_lists
from icsa.errors import InputError

LISTS = ("dbImages", "qImages", "qIdx", "pIdx")
SPLIT = "val"
POS_DIST_THR = 25.0  # mapillary_sls MSLS(mode='val', posDistThr=25): the lists' radius
TRAIN_POS_DIST_THR = 10.0  # mapillary_sls's training posDistThr
_SOURCE = (
    "MSLS comes from https://www.mapillary.com/dataset/places; the four msls_val_*.npy lists "
    "from amaralibey/gsv-cities (datasets/msls_val/)"
)


def list_path(root: Path, name: str) -> Path:
    return root / f"msls_val_{name}.npy"


def _names(root: Path, name: str) -> np.ndarray | list[np.ndarray]:
    path = list_path(root, name)
    if not path.is_file():
        raise InputError(
            f"{path}: not found; expected the MSLS-val lists msls_val_{{{','.join(LISTS)}}}.npy "
            f"beside train_val/. {_SOURCE}"
        )
    if name == "pIdx":
        return read_object_lists(path)
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 1:
        raise InputError(f"{path}: shape {arr.shape}, expected a 1-D list")
    return arr


def city_of(name: str, where: Path) -> str:
    """``cph`` for ``train_val/cph/query/images/KEY.jpg``."""
    parts = Path(str(name)).parts
    if len(parts) < 5 or parts[0] != "train_val" or parts[2] not in ("database", "query"):
        raise InputError(
            f"{where}: image path {name!r}, expected train_val/<city>/{{database,query}}/"
            "images/<key>.jpg relative to the dataset root"
        )
    return parts[1]


def _utm_table(csv_path: Path) -> dict[str, tuple[float, float]]:
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: not found; expected MSLS metadata (key, easting, northing)")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"key", "easting", "northing"} <= set(rows[0]):
        raise InputError(f"{csv_path}: columns {list(rows[0])}, expected key, easting, northing")
    return {r["key"]: (float(r["easting"]), float(r["northing"])) for r in rows}


def _positions(root: Path, names: list[str], what: str) -> np.ndarray:
    tables: dict[Path, dict] = {}
    out = np.empty((len(names), 2), dtype=np.float64)
    for i, name in enumerate(names):
        parts = Path(name).parts
        csv_path = root.joinpath(*parts[:3], "postprocessed.csv")
        if csv_path not in tables:
            tables[csv_path] = _utm_table(csv_path)
        table = tables[csv_path]
        key = Path(name).stem
        if key not in table:
            raise InputError(f"{csv_path}: no row for {what} image key {key!r} ({name})")
        out[i] = table[key]
    return out


def msls_splits(root: Path) -> list[str]:
    """``val`` when the four lists are present, else none."""
    return [SPLIT] if all(list_path(root, n).is_file() for n in LISTS) else []


def read_msls_val(
    root: str | Path, city: str | None = None
) -> tuple[DbStruct, tuple[np.ndarray, ...], tuple[str, ...]]:
    """``(dbStruct, per-query positives, per-query city)`` of the official MSLS-val queries,
    all cities or only ``city``."""
    root = Path(root)
    db_names, q_all, q_idx, p_idx = (_names(root, n) for n in LISTS)
    if not np.issubdtype(q_idx.dtype, np.integer) or len(q_idx) == 0:
        raise InputError(f"{list_path(root, 'qIdx')}: {q_idx.dtype}, expected integer indices")
    if q_idx.min() < 0 or q_idx.max() >= len(q_all):
        raise InputError(
            f"{list_path(root, 'qIdx')}: index {int(q_idx.max())} out of range, expected indices "
            f"into the {len(q_all)} names of msls_val_qImages.npy"
        )
    if len(p_idx) != len(q_idx):
        raise InputError(
            f"{list_path(root, 'pIdx')}: {len(p_idx)} lists, expected {len(q_idx)} (one per "
            "official query of msls_val_qIdx.npy)"
        )
    db_names = [str(n) for n in db_names]
    q_names = [str(q_all[i]) for i in q_idx]
    positives = check_positives(list(p_idx), len(db_names), str(list_path(root, "pIdx")))
    db_city = np.array([city_of(n, list_path(root, "dbImages")) for n in db_names])
    q_city = np.array([city_of(n, list_path(root, "qImages")) for n in q_names])
    if city is not None:
        if city not in set(q_city):
            raise InputError(
                f"MSLS-val city = {city!r} has no official query; expected one of "
                f"{sorted(set(q_city))}"
            )
        keep_db = np.flatnonzero(db_city == city)
        new_index = np.full(len(db_names), -1, dtype=np.int64)
        new_index[keep_db] = np.arange(len(keep_db))
        keep_q = np.flatnonzero(q_city == city)
        db_names = [db_names[i] for i in keep_db]
        q_names = [q_names[i] for i in keep_q]
        positives = tuple(new_index[p][new_index[p] >= 0] for p in (positives[i] for i in keep_q))
        q_city = q_city[keep_q]
    db_utm = _positions(root, db_names, "database")
    q_utm = _positions(root, q_names, "query")
    which = SPLIT if city is None else f"{SPLIT}-{city}"
    db = DbStruct.from_lists(
        which, db_names, db_utm, q_names, q_utm, POS_DIST_THR, TRAIN_POS_DIST_THR
    )
    return db, positives, tuple(str(c) for c in q_city)
