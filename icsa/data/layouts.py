"""Dataset layouts on disk and :func:`load_split`, the one way a split gets from disk to code.

Each supported dataset is a folder in the layout the NetVLAD authors distribute (DESIGN §4):
``datasets/*.mat`` dbStruct files plus image folders whose names the dbStructs list relative to
a database and a query folder. The synthetic city writes exactly the same layout, so real and
synthetic data share this code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from icsa.data.dbstruct import DbStruct, read_dbstruct
from icsa.errors import InputError


@dataclass(frozen=True)
class Layout:
    """Where a dataset keeps its files, relative to the dataset root."""

    mats: dict[str, str]  # split -> .mat path
    db_dir: str  # database image names are relative to this folder ("" = the root)
    q_dir: str  # query image names are relative to this folder
    db_hint: str  # how the database images look on disk, for error messages


def _pitts(name: str) -> Layout:
    return Layout(
        mats={s: f"datasets/{name}_{s}.mat" for s in ("train", "val", "test")},
        db_dir="",
        q_dir="queries_real",
        db_hint="database images under 000/ … 010/ (names relative to the root)",
    )


LAYOUTS: dict[str, Layout] = {
    "pitts30k": _pitts("pitts30k"),
    "pitts250k": _pitts("pitts250k"),
    "tokyotm": Layout(
        mats={s: f"datasets/tokyoTM_{s}.mat" for s in ("train", "val")},
        db_dir="images",
        q_dir="images",
        db_hint="database and query images under images/",
    ),
    "tokyo247": Layout(
        mats={"test": "datasets/tokyo247.mat"},
        db_dir="images",
        q_dir="query",
        db_hint="database images under images/",
    ),
}
DATASETS = tuple(LAYOUTS)

_SOURCE = (
    "Pittsburgh 250k/30k, Tokyo 24/7 and TokyoTM are distributed by the NetVLAD authors on "
    "request (https://www.di.ens.fr/willow/research/netvlad/); without them, run "
    "`icsa prepare synthetic --out data/synthetic` for the embedded synthetic city"
)


def get_layout(dataset: str) -> Layout:
    if dataset not in LAYOUTS:
        raise InputError(f"dataset = {dataset!r} is unknown; expected one of {list(DATASETS)}")
    return LAYOUTS[dataset]


def describe_layout(dataset: str) -> str:
    """One sentence listing the files a ``dataset`` root must hold."""
    layout = get_layout(dataset)
    query_place = f"queries under {layout.q_dir}/" if layout.q_dir != layout.db_dir else ""
    parts = [", ".join(layout.mats.values()), layout.db_hint] + (
        [query_place] if query_place else []
    )
    return f"a {dataset} folder in the NetVLAD layout: " + "; ".join(parts)


@dataclass(frozen=True, repr=False)
class PlaceSplit:
    """One split of a dataset: its dbStruct plus absolute image paths in dbStruct order."""

    name: str  # e.g. "pitts30k-test"
    dataset: str
    split: str
    root: Path
    mat_path: Path
    db: DbStruct
    db_paths: list[Path]
    q_paths: list[Path]

    def __repr__(self) -> str:
        return f"< {self.name} - #q: {self.db.num_q}; #db: {self.db.num_db} >"


def split_mat_path(root: str | os.PathLike, dataset: str, split: str) -> Path:
    """The ``.mat`` of ``split``; InputError for an unknown split or a missing root."""
    layout = get_layout(dataset)
    if split not in layout.mats:
        raise InputError(
            f"split = {split!r} does not exist for {dataset}; expected one of {list(layout.mats)}"
        )
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            f"{root}: dataset root not found; expected {describe_layout(dataset)}. {_SOURCE}"
        )
    return root / layout.mats[split]


def load_split(root: str | os.PathLike, dataset: str, split: str) -> PlaceSplit:
    """Read ``split`` of ``dataset`` under ``root`` (images are not opened; see ``check``)."""
    mat = split_mat_path(root, dataset, split)
    if not mat.is_file():
        raise InputError(
            f"{mat}: dbStruct file not found; expected {describe_layout(dataset)}. {_SOURCE}"
        )
    db = read_dbstruct(mat)
    layout = get_layout(dataset)
    root = Path(root)
    db_base, q_base = root / layout.db_dir, root / layout.q_dir
    return PlaceSplit(
        name=f"{dataset}-{split}",
        dataset=dataset,
        split=split,
        root=root,
        mat_path=mat,
        db=db,
        db_paths=[db_base / name for name in db.db_images],
        q_paths=[q_base / name for name in db.q_images],
    )
