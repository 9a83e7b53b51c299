"""Dataset layouts on disk and :func:`load_split`, the one way a split gets from disk to code.

Three layouts (a dataset's ``layout:`` in config, ``--layout`` on every command that takes
``--root``):

- ``netvlad`` (the default): the layout the NetVLAD authors distribute (docs/architecture.md
  "Data"), ``datasets/*.mat`` dbStruct files plus image folders whose names the dbStructs list
  relative to a database and a query folder. Only the datasets of :data:`LAYOUTS` come in it.
- ``benchmark``: the visual geo-localization benchmark's ``images/{train,val,test}/{database,
  queries}/`` with the UTM position in each file name (:mod:`icsa.data.benchmark`); any dataset
  name. A ``positives.npz`` beside a split's folders (``images/<split>/positives.npz``,
  :mod:`icsa.data.ground_truth`) gives its queries' positives as database index lists.
- ``msls``: Mapillary SLS's ``train_val/<city>/…`` with the MSLS-val lists of the reference
  evaluation (:mod:`icsa.data.msls`); splits ``val`` and ``val-<city>``.
- ``gsvcities``: GSV-Cities' ``Dataframes/<city>.csv`` + ``Images/<city>/`` (:mod:`icsa.data.
  gsv_cities`); split ``train``, database images labelled by place, no queries: it trains the
  multisimilarity regime and validates on another dataset (config ``validation``).

The synthetic city writes either, so real and synthetic data share this code path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from icsa.errors import InputError
from icsa.io import file_digest

if TYPE_CHECKING:  # the readers (scipy, numpy) load with the first split: the workflow's parse
    import numpy as np  # imports this module for its names only

    from icsa.data.dbstruct import DbStruct

LAYOUT_KINDS = ("netvlad", "benchmark", "msls", "gsvcities")
# What synthetic and convert write (the synthetic city also writes a gsvcities role of its own).
WRITABLE_LAYOUTS = ("netvlad", "benchmark")
PLACE_LAYOUTS = ("gsvcities",)  # training sets of labelled places, no queries: no triplets
DEFAULT_LAYOUT = "netvlad"
# Time machines (TokyoTM): capture times decide positives and the time rule. Elsewhere a
# benchmark name's timestamp field is only a note (MSLS has one; its protocol has no such rule).
TIME_MACHINE_DATASETS = frozenset({"tokyotm"})


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
POSITIVES_FILE = "positives.npz"  # beside a benchmark split's folders (icsa.data.ground_truth)

_SOURCE = (
    "Pittsburgh 250k/30k, Tokyo 24/7 and TokyoTM are distributed by the NetVLAD authors on "
    "request (https://www.di.ens.fr/willow/research/netvlad/); without them, run "
    "`icsa prepare synthetic --out data/synthetic` for the embedded synthetic city"
)


def check_layout(layout: str, kinds: tuple[str, ...] = LAYOUT_KINDS) -> str:
    """``layout`` if it is one of ``kinds``; InputError listing them otherwise."""
    if layout not in kinds:
        raise InputError(f"layout = {layout!r} is unknown here; expected one of {list(kinds)}")
    return layout


def get_layout(dataset: str) -> Layout:
    """The NetVLAD layout of ``dataset``."""
    if dataset not in LAYOUTS:
        raise InputError(
            f"dataset = {dataset!r} is unknown in the netvlad layout; expected one of "
            f"{list(DATASETS)} (any other dataset: layout benchmark)"
        )
    return LAYOUTS[dataset]


def dataset_splits(root: str | os.PathLike, dataset: str, layout: str = DEFAULT_LAYOUT) -> list:
    """Every split of ``dataset``: the NetVLAD layout's .mat files, or the benchmark folders
    present under ``root/images``."""
    if check_layout(layout) == "netvlad":
        return list(get_layout(dataset).mats)
    if layout == "msls":
        from icsa.data import msls

        found = msls.msls_splits(Path(root))
        if not found:
            raise InputError(
                f"{root}: no MSLS-val lists; expected msls_val_{{dbImages,qImages,qIdx,pIdx}}.npy "
                "beside train_val/ (the msls layout, icsa/data/msls.py)"
            )
        return found
    if layout == "gsvcities":
        from icsa.data import gsv_cities

        if not gsv_cities.city_frames(Path(root)):
            raise InputError(
                f"{Path(root) / gsv_cities.DATAFRAMES}: no <city>.csv; expected the GSV-Cities "
                "layout (icsa/data/gsv_cities.py)"
            )
        return [gsv_cities.SPLIT]
    from icsa.data import benchmark

    found = benchmark.benchmark_splits(root)
    if not found:
        raise InputError(
            f"{Path(root) / 'images'}: no split folder; expected images/{{train,val,test}}/"
            "{database,queries}/ (the benchmark layout)"
        )
    return found


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
    source: Path  # the .mat (netvlad layout) or the split's folder (benchmark layout)
    db: DbStruct
    db_paths: list[Path]
    q_paths: list[Path]
    layout: str = DEFAULT_LAYOUT
    # Ground truth as database index lists, one sorted int64 array per query, where the dataset
    # gives it (icsa.data.ground_truth); None: positives come from the UTM radius.
    positives: tuple[np.ndarray, ...] | None = None
    q_groups: tuple[str, ...] | None = None  # per-query group reported apart (MSLS: the city)
    # Place label per database image where the dataset groups images into places (GSV-Cities);
    # None: the multisimilarity regime groups by UTM cell (icsa.train.places).
    place_labels: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"< {self.name} - #q: {self.db.num_q}; #db: {self.db.num_db} >"

    def digest(self) -> str:
        """What identifies the split's content for a run's fingerprint: the .mat's bytes, or in
        the benchmark layout the sorted file names (they hold every position and time)."""
        if self.layout == "netvlad":
            return file_digest(self.source)
        text = "\n".join(["database", *self.db.db_images, "queries", *self.db.q_images])
        if self.positives is not None:  # the lists are content too (absent: digest unchanged)
            text += "\npositives\n" + "\n".join(" ".join(map(str, p)) for p in self.positives)
        return hashlib.sha256(text.encode()).hexdigest()


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


def load_split(
    root: str | os.PathLike, dataset: str, split: str, layout: str = DEFAULT_LAYOUT
) -> PlaceSplit:
    """Read ``split`` of ``dataset`` under ``root`` (images are not opened; see ``check``)."""
    if check_layout(layout) == "benchmark":
        return _load_benchmark_split(Path(root), dataset, split)
    if layout == "msls":
        return _load_msls_split(Path(root), dataset, split)
    if layout == "gsvcities":
        return _load_gsv_split(Path(root), dataset, split)
    mat = split_mat_path(root, dataset, split)
    if not mat.is_file():
        raise InputError(
            f"{mat}: dbStruct file not found; expected {describe_layout(dataset)}. {_SOURCE}"
        )
    from icsa.data.dbstruct import read_dbstruct

    db = read_dbstruct(mat)
    layout = get_layout(dataset)
    root = Path(root)
    db_base, q_base = root / layout.db_dir, root / layout.q_dir
    return PlaceSplit(
        name=f"{dataset}-{split}",
        dataset=dataset,
        split=split,
        root=root,
        source=mat,
        db=db,
        db_paths=[db_base / name for name in db.db_images],
        q_paths=[q_base / name for name in db.q_images],
    )


def _load_benchmark_split(root: Path, dataset: str, split: str) -> PlaceSplit:
    if not root.is_dir():
        raise InputError(
            f"{root}: dataset root not found; expected a {dataset} folder in the benchmark "
            "layout: images/{train,val,test}/{database,queries}/ with @east@north@…@.jpg names"
        )
    from icsa.data import benchmark

    db = benchmark.read_benchmark_split(root, split, dataset in TIME_MACHINE_DATASETS)
    base = root / "images" / split
    positives = None
    if (base / POSITIVES_FILE).is_file():
        from icsa.data.ground_truth import read_positives

        positives = read_positives(base / POSITIVES_FILE, db.num_q, db.num_db)
    return PlaceSplit(
        name=f"{dataset}-{split}",
        dataset=dataset,
        split=split,
        root=root,
        source=base,
        db=db,
        db_paths=[base / benchmark.DB_FOLDER / name for name in db.db_images],
        q_paths=[base / benchmark.Q_FOLDER / name for name in db.q_images],
        layout="benchmark",
        positives=positives,
    )


def _load_msls_split(root: Path, dataset: str, split: str) -> PlaceSplit:
    from icsa.data import msls

    if not root.is_dir():
        raise InputError(
            f"{root}: dataset root not found; expected an MSLS folder (train_val/<city>/… and "
            "the msls_val_*.npy lists, icsa/data/msls.py)"
        )
    if split != msls.SPLIT and not split.startswith(msls.SPLIT + "-"):
        raise InputError(
            f"split = {split!r}: expected {msls.SPLIT!r} or {msls.SPLIT}-<city> in the msls layout"
        )
    city = split[len(msls.SPLIT) + 1 :] or None
    db, positives, cities = msls.read_msls_val(root, city)
    return PlaceSplit(
        name=f"{dataset}-{split}",
        dataset=dataset,
        split=split,
        root=root,
        source=msls.list_path(root, "qIdx"),
        db=db,
        db_paths=[root / name for name in db.db_images],
        q_paths=[root / name for name in db.q_images],
        layout="msls",
        positives=positives,
        q_groups=cities,
    )


def _load_gsv_split(root: Path, dataset: str, split: str) -> PlaceSplit:
    from icsa.data import gsv_cities

    if not root.is_dir():
        raise InputError(
            f"{root}: dataset root not found; expected a GSV-Cities folder (Dataframes/<city>.csv "
            "and Images/<city>/, icsa/data/gsv_cities.py)"
        )
    if split != gsv_cities.SPLIT:
        raise InputError(
            f"split = {split!r}: the gsvcities layout has only {gsv_cities.SPLIT!r} (GSV-Cities "
            "has no validation or test split: set `validation` to another dataset's split)"
        )
    cities = gsv_cities.read_gsv_cities(root)
    base = root / gsv_cities.IMAGES
    return PlaceSplit(
        name=f"{dataset}-{split}",
        dataset=dataset,
        split=split,
        root=root,
        source=root / gsv_cities.DATAFRAMES,
        db=cities.db,
        db_paths=[base / name for name in cities.db.db_images],
        q_paths=[],
        layout="gsvcities",
        place_labels=cities.labels,
    )
