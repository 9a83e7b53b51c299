"""NetVLAD ``dbStruct`` files: the ``.mat`` that lists a split's images and their UTM positions.

The NetVLAD authors ship Pittsburgh 30k/250k, Tokyo 24/7 and TokyoTM with one MATLAB struct per
split (docs/architecture.md "Data"). Pittsburgh and Tokyo 24/7 use 10 fields; TokyoTM adds
capture times (``dbTimeStamp`` after ``utmDb``, ``qTimeStamp`` after ``utmQ``) for 12. We read
by field *name* so any field order works, and write in the canonical order so that positional
readers (the public pytorch-NetVlad code indexes ``mat['dbStruct'].item()`` by position) read
our files too."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.io

from icsa.errors import InputError
from icsa.io import atomic_path

FIELDS_10 = (
    "whichSet", "dbImageFns", "utmDb", "qImageFns", "utmQ", "numImages", "numQueries",
    "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr",
)  # fmt: skip
FIELDS_12 = (
    "whichSet", "dbImageFns", "utmDb", "dbTimeStamp", "qImageFns", "utmQ", "qTimeStamp",
    "numImages", "numQueries", "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr",
)  # fmt: skip
# scipy stamps the current time into the 116-byte header; a fixed text keeps files byte-identical.
_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, written by icsa".ljust(116, b" ")


@dataclass(frozen=True)
class DbStruct:
    """One split of a NetVLAD dataset; ``*_utm`` are [N, 2] (easting, northing) in metres."""

    which_set: str
    db_images: list[str]
    db_utm: np.ndarray
    q_images: list[str]
    q_utm: np.ndarray
    num_db: int
    num_q: int
    pos_dist_thr: float
    pos_dist_sq_thr: float
    non_triv_pos_dist_sq_thr: float
    db_timestamps: np.ndarray | None = None
    q_timestamps: np.ndarray | None = None

    @property
    def has_timestamps(self) -> bool:
        return self.db_timestamps is not None

    @classmethod
    def from_lists(
        cls,
        which_set: str,
        db_images: list[str],
        db_utm: np.ndarray,
        q_images: list[str],
        q_utm: np.ndarray,
        pos_dist_thr: float,
        train_pos_dist_thr: float,
        db_timestamps: np.ndarray | None = None,
        q_timestamps: np.ndarray | None = None,
    ) -> DbStruct:
        """A split from its image lists and radii (the counts and squared radii derived)."""
        return cls(
            which_set=which_set,
            db_images=db_images,
            db_utm=db_utm,
            q_images=q_images,
            q_utm=q_utm,
            num_db=len(db_images),
            num_q=len(q_images),
            pos_dist_thr=pos_dist_thr,
            pos_dist_sq_thr=pos_dist_thr**2,
            non_triv_pos_dist_sq_thr=train_pos_dist_thr**2,
            db_timestamps=db_timestamps,
            q_timestamps=q_timestamps,
        )


def _check(db: DbStruct, where: str) -> None:
    """Raise InputError (naming ``where``) when counts, shapes or time stamps disagree."""
    for what, images, utm, num, ts in (
        ("database", db.db_images, db.db_utm, db.num_db, db.db_timestamps),
        ("query", db.q_images, db.q_utm, db.num_q, db.q_timestamps),
    ):
        if utm.ndim != 2 or utm.shape[1] != 2:
            raise InputError(
                f"{where}: {what} UTM has shape {utm.shape}, expected N×2 (2×N in .mat)"
            )
        if not (num == len(images) == utm.shape[0]):
            raise InputError(
                f"{where}: {what} counts disagree: num={num}, {len(images)} image names, "
                f"{utm.shape[0]} UTM positions (expected all equal)"
            )
        if ts is not None and ts.shape != (num,):
            raise InputError(f"{where}: {what} time stamps have {ts.size} entries, expected {num}")
    if (db.db_timestamps is None) != (db.q_timestamps is None):
        raise InputError(f"{where}: time stamps given for only one of database/queries")


# ---------------------------------------------------------------------------------------- read
def _text(value: np.ndarray) -> str:
    """A MATLAB char array as loaded by scipy (``array(['abc'])`` or empty) → ``str``."""
    arr = np.asarray(value)
    return str(arr.ravel()[0]) if arr.size else ""


def _names(value: np.ndarray) -> list[str]:
    """A MATLAB cell of char arrays (N×1 or 1×N) → list of names."""
    return [_text(cell) for cell in np.asarray(value, dtype=object).ravel()]


# UTM eastings are below 1e6 m and northings below 1e7 m; anything beyond 1e8 is not a position.
UTM_LIMIT = 1e8


def _utm(value: np.ndarray, field: str, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != 2:
        raise InputError(
            f"{where}: field {field} has shape {arr.shape}, expected 2×N (easting; northing)"
        )
    # A NaN/inf (or absurd) coordinate would fail much later, in a KD-tree, naming no file.
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=0) | (np.abs(arr) > UTM_LIMIT).any(axis=0))
    if bad.size:
        raise InputError(
            f"{where}: field {field} has {bad.size} non-finite or absurd coordinate(s) (first: "
            f"column {bad[0] + 1} = {arr[:, bad[0]].tolist()}); expected finite UTM metres "
            f"within ±{UTM_LIMIT:.0e}"
        )
    return np.ascontiguousarray(arr.T)


def _scalar(value: np.ndarray, field: str, where: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise InputError(f"{where}: field {field} has shape {arr.shape}, expected a scalar")
    return float(arr.ravel()[0])


def _count(value: np.ndarray, field: str, where: str) -> int:
    number = _scalar(value, field, where)
    if number != int(number) or number < 0:
        raise InputError(f"{where}: field {field} = {number}, expected a non-negative integer")
    return int(number)


def read_dbstruct(path: str | os.PathLike) -> DbStruct:
    """Read a NetVLAD ``.mat`` (10 fields, or 12 with TokyoTM time stamps) by field name."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(f"{where}: dbStruct file not found (expected a NetVLAD .mat file)")
    try:
        mat = scipy.io.loadmat(path, struct_as_record=True)
    except NotImplementedError as err:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise InputError(f"{where}: {err}; re-save it in MATLAB with save(..., '-v7')") from err
    except Exception as err:  # noqa: BLE001 — any parse failure is bad input here
        raise InputError(f"{where}: not a readable MATLAB .mat file ({err})") from err
    if "dbStruct" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise InputError(f"{where}: no variable 'dbStruct' (found: {found or 'none'})")
    struct = mat["dbStruct"]
    names = struct.dtype.names
    if names is None or struct.size != 1:
        raise InputError(f"{where}: 'dbStruct' is not a 1×1 MATLAB struct (shape {struct.shape})")
    record = struct.ravel()[0]
    has_time = "dbTimeStamp" in names or "qTimeStamp" in names
    missing = [f for f in (FIELDS_12 if has_time else FIELDS_10) if f not in names]
    if missing:
        raise InputError(f"{where}: dbStruct lacks field(s) {missing} (found: {list(names)})")

    def times(field: str) -> np.ndarray | None:
        return np.asarray(record[field], dtype=np.float64).ravel() if has_time else None

    db = DbStruct(
        which_set=_text(record["whichSet"]),
        db_images=_names(record["dbImageFns"]),
        db_utm=_utm(record["utmDb"], "utmDb", where),
        q_images=_names(record["qImageFns"]),
        q_utm=_utm(record["utmQ"], "utmQ", where),
        num_db=_count(record["numImages"], "numImages", where),
        num_q=_count(record["numQueries"], "numQueries", where),
        pos_dist_thr=_scalar(record["posDistThr"], "posDistThr", where),
        pos_dist_sq_thr=_scalar(record["posDistSqThr"], "posDistSqThr", where),
        non_triv_pos_dist_sq_thr=_scalar(
            record["nonTrivPosDistSqThr"], "nonTrivPosDistSqThr", where
        ),
        db_timestamps=times("dbTimeStamp"),
        q_timestamps=times("qTimeStamp"),
    )
    _check(db, where)
    return db


# --------------------------------------------------------------------------------------- write
def _cell(names: list[str]) -> np.ndarray:
    """Names → an N×1 object array, which scipy writes as a MATLAB cell of char arrays."""
    cell = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cell[i, 0] = str(name)
    return cell


def _as_struct(db: DbStruct) -> np.ndarray:
    utm_db, utm_q = db.db_utm.T, db.q_utm.T  # MATLAB keeps 2×N
    # Counts are MATLAB int32 (scipy loads them as integer arrays) because the public PyTorch
    # code reads them positionally with ``.item()`` and uses them in ``range()`` and slices, which
    # a double would break; thresholds are doubles. The reader accepts either for the counts.
    values = {
        "whichSet": str(db.which_set),
        "dbImageFns": _cell(db.db_images),
        "utmDb": utm_db,
        "qImageFns": _cell(db.q_images),
        "utmQ": utm_q,
        "numImages": np.array([[db.num_db]], dtype=np.int32),
        "numQueries": np.array([[db.num_q]], dtype=np.int32),
        "posDistThr": np.array([[float(db.pos_dist_thr)]]),
        "posDistSqThr": np.array([[float(db.pos_dist_sq_thr)]]),
        "nonTrivPosDistSqThr": np.array([[float(db.non_triv_pos_dist_sq_thr)]]),
    }
    fields = FIELDS_10
    if db.has_timestamps:
        fields = FIELDS_12
        values["dbTimeStamp"] = db.db_timestamps.reshape(1, -1)
        values["qTimeStamp"] = db.q_timestamps.reshape(1, -1)
    struct = np.empty((1, 1), dtype=[(name, object) for name in fields])
    for name in fields:
        struct[0, 0][name] = values[name]
    return struct


def write_dbstruct(path: str | os.PathLike, db: DbStruct) -> None:
    """Write ``db`` as a MATLAB v5 ``.mat`` with ``dbStruct`` fields in the canonical order.

    The output is byte-identical for equal inputs (fixed header text, no time stamp).
    """
    path = Path(path)
    times = {} if db.db_timestamps is None else {"db_timestamps": np.asarray(db.db_timestamps)}
    if db.q_timestamps is not None:
        times["q_timestamps"] = np.asarray(db.q_timestamps)
    db = replace(
        db,
        db_images=[str(n) for n in db.db_images],
        q_images=[str(n) for n in db.q_images],
        db_utm=np.asarray(db.db_utm, dtype=np.float64),
        q_utm=np.asarray(db.q_utm, dtype=np.float64),
        **{k: np.asarray(v, dtype=np.float64).ravel() for k, v in times.items()},
    )
    _check(db, f"{path} (writing)")
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"dbStruct": _as_struct(db)}, format="5", oned_as="column")
    data = bytearray(buffer.getvalue())
    data[: len(_HEADER)] = _HEADER
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(data))
