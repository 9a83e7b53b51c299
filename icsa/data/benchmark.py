"""The visual geo-localization benchmark's file-name layout, read as a :class:`DbStruct`.

Berton et al.'s benchmark (CVPR 2022, github.com/gmberton/deep-visual-geo-localization-benchmark)
and its dataset downloader store every dataset (Pitts30k, MSLS, Nordland, SF-XL, St Lucia, …) as

    images/{train,val,test}/{database,queries}/**/@east@north@zone@letter@lat@lon@pano@tile@
        heading@pitch@roll@height@timestamp@note@.jpg

with the position in the file name: field 1 is the UTM easting and field 2 the northing (the
only required ones); the others may be empty. Its ``datasets_ws.py`` lists each folder with a
recursive glob, **sorted**, reads the UTM with ``path.split("@")[1:3]`` and takes positives within
25 m (``val_positive_dist_threshold``); its training positives lie within 10 m
(``train_positives_dist_threshold``) and negatives beyond 25 m: the same radii as NetVLAD's
dbStructs. So a split here becomes a DbStruct with those radii, images in sorted-name order, and
the rest of icsa (mining, Recall@N, the time rule) is unchanged. The timestamp field, where every
image of a split has one, becomes the capture time (TokyoTM's time rule uses it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from icsa.data.dbstruct import UTM_LIMIT, DbStruct
from icsa.errors import InputError

SPLITS = ("train", "val", "test")
DB_FOLDER, Q_FOLDER = "database", "queries"
EXTENSIONS = (".jpg", ".jpeg", ".png")
POS_DIST_THR = 25.0  # val_positive_dist_threshold: a database image within 25 m is a positive
TRAIN_POS_DIST_THR = 10.0  # train_positives_dist_threshold: training positives within 10 m


@dataclass(frozen=True)
class BenchmarkName:
    """The fields of one file name (strings as written; easting and northing parsed)."""

    east: float
    north: float
    zone_number: str = ""
    zone_letter: str = ""
    latitude: str = ""
    longitude: str = ""
    pano_id: str = ""
    tile_num: str = ""
    heading: str = ""
    pitch: str = ""
    roll: str = ""
    height: str = ""
    timestamp: str = ""
    note: str = ""

    def file_name(self, extension: str = ".jpg") -> str:
        # repr() is the shortest text that reads back as the same float: the round trip is exact.
        values = [repr(float(self.east)), repr(float(self.north))]
        values += [getattr(self, f.name) for f in fields(self)[2:]]
        for f, value in zip(fields(self)[2:], values[2:]):
            if "@" in value or "/" in value:
                raise InputError(f"{f.name} = {value!r}: a file-name field may not hold '@' or '/'")
        return "@" + "@".join(values) + "@" + extension


def parse_name(path: str | os.PathLike) -> BenchmarkName:
    """The fields of ``path``'s file name; InputError naming the file when it does not parse."""
    name = Path(path).name
    parts = name.split("@")
    n = len(fields(BenchmarkName))
    if len(parts) != n + 2 or parts[0] != "" or parts[-1].lower() not in EXTENSIONS:
        raise InputError(
            f"{path}: not a benchmark image name; expected @east@north@zone@letter@lat@lon@pano"
            f"@tile@heading@pitch@roll@height@timestamp@note@.jpg ({n} fields between '@'s, "
            f"found {len(parts) - 2})"
        )
    try:
        east, north = float(parts[1]), float(parts[2])
    except ValueError:
        raise InputError(
            f"{path}: UTM easting/northing = {parts[1]!r}/{parts[2]!r}; expected numbers in metres"
        ) from None
    if not all(math.isfinite(v) and abs(v) <= UTM_LIMIT for v in (east, north)):
        raise InputError(
            f"{path}: UTM {east}, {north} is not a position; expected finite metres within "
            f"±{UTM_LIMIT:.0e}"
        )
    return BenchmarkName(east, north, *parts[3:-1])


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursive, hidden entries skipped) as sorted relative
    POSIX paths: the benchmark's order."""
    out = []
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(base).relative_to(folder)
        out += [
            (rel / f).as_posix()
            for f in files
            if not f.startswith(".") and Path(f).suffix.lower() in EXTENSIONS
        ]
    # The benchmark sorts full paths, which share the folder prefix: the same order.
    return sorted(out)


def _capture_times(names: list[BenchmarkName], where: Path) -> np.ndarray | None:
    stamps = [n.timestamp for n in names]
    given = [s != "" for s in stamps]
    if not any(given):
        return None
    if not all(given):
        first = given.index(False)
        raise InputError(
            f"{where}: {given.count(False)} of {len(stamps)} images have no timestamp field "
            f"(first: image {first + 1} in sorted order); expected all or none"
        )
    try:
        return np.array([float(s) for s in stamps], dtype=np.float64)
    except ValueError as err:
        raise InputError(f"{where}: a timestamp field is not a number ({err})") from None


def read_benchmark_split(
    root: str | os.PathLike, split: str, capture_times: bool = False
) -> DbStruct:
    """The DbStruct of ``images/<split>/`` under ``root`` (names relative to its database and
    queries folders, in sorted order); with ``capture_times`` the timestamp fields become the
    dbStruct's capture times (a time machine's; required then)."""
    base = Path(root) / "images" / split
    if split not in SPLITS:
        raise InputError(f"split = {split!r}: expected one of {list(SPLITS)}")
    lists, utms, parsed = {}, {}, {}
    for folder in (DB_FOLDER, Q_FOLDER):
        where = base / folder
        if not where.is_dir():
            raise InputError(
                f"{where}: folder not found; expected images/{split}/{{database,queries}}/ with "
                "benchmark-named images (icsa/data/benchmark.py)"
            )
        names = list_images(where)
        if not names:
            raise InputError(f"{where}: holds no images ({', '.join(EXTENSIONS)})")
        parsed[folder] = [parse_name(where / n) for n in names]
        lists[folder] = names
        utms[folder] = np.array([(p.east, p.north) for p in parsed[folder]], dtype=np.float64)
    db_times = q_times = None
    if capture_times:
        db_times = _capture_times(parsed[DB_FOLDER], base / DB_FOLDER)
        q_times = _capture_times(parsed[Q_FOLDER], base / Q_FOLDER)
        if (db_times is None) != (q_times is None):
            raise InputError(f"{base}: timestamps given for only one of database/queries")
    return DbStruct.from_lists(
        split, lists[DB_FOLDER], utms[DB_FOLDER], lists[Q_FOLDER], utms[Q_FOLDER],
        POS_DIST_THR, TRAIN_POS_DIST_THR, db_times, q_times,
    )  # fmt: skip


def benchmark_splits(root: str | os.PathLike) -> list[str]:
    """The splits present under ``root/images`` (in train, val, test order)."""
    return [s for s in SPLITS if (Path(root) / "images" / s).is_dir()]
