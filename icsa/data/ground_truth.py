"""Ground truth as lists of matching database indices, and Nordland's frame tolerance.

Some evaluation sets define their positives not by a radius around a UTM position but by a list
of matching database indices per query: MSLS-val as amaralibey/gsv-cities evaluates it
(``msls_val_pIdx.npy``, ``dataloaders/val/MapillaryDataset.py``), Nordland, SPED and the other
VPR-Bench sets that gsv-cities ships as ``*_gt.npy``, and gmberton/VPR-methods-evaluation
(``test_dataset.py``'s ``positives_per_query``). A query is found at N when any of its N nearest
database images is in its list (gsv-cities ``utils/validation.py``: ``np.in1d(pred[:n],
gt[q_idx])``).

On disk (docs/architecture.md "Data") a split's lists are ``positives.npz``, one CSR pair:
``indptr`` (int64, num_q + 1, starting at 0, non-decreasing) and ``indices`` (int64 database
indices, query ``i``'s list is ``indices[indptr[i]:indptr[i+1]]``), plus ``num_db`` (the
database size the indices refer to, checked on load). Plain arrays: no pickle is read. The
references store Python object arrays; :func:`read_object_lists` reads those (``allow_pickle``,
so only for a file the user trusts) and :func:`write_positives` stores them in this form.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icsa.data.layouts import POSITIVES_FILE  # noqa: F401  (re-exported: the file name)
from icsa.errors import InputError
from icsa.io import atomic_path


def check_positives(
    lists: Sequence[np.ndarray | Sequence[int]], num_db: int, where: str
) -> tuple[np.ndarray, ...]:
    """Each query's list as sorted unique int64 indices; InputError naming ``where`` when an
    entry is not an integer in ``[0, num_db)``."""
    out = []
    for q, entry in enumerate(lists):
        arr = np.asarray(entry).ravel()
        whole = np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))
        if arr.size and not np.issubdtype(arr.dtype, np.integer) and not whole:
            raise InputError(
                f"{where}: query {q}'s positives are {arr.dtype}, expected integer database indices"
            )
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= num_db):
            bad = int(arr.min() if arr.min() < 0 else arr.max())
            raise InputError(
                f"{where}: query {q} lists database index {bad}, expected indices in "
                f"[0, {num_db}) (the split's {num_db} database images)"
            )
        out.append(np.unique(arr))
    return tuple(out)


def write_positives(
    path: str | os.PathLike, lists: Sequence[np.ndarray | Sequence[int]], num_db: int
) -> None:
    """Store per-query positive lists as ``positives.npz`` (CSR, see the module docstring)."""
    checked = check_positives(lists, num_db, str(path))
    indptr = np.zeros(len(checked) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(p) for p in checked])
    indices = np.concatenate(checked) if checked else np.empty(0, dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, indptr=indptr, indices=indices.astype(np.int64), num_db=np.int64(num_db))


def read_positives(path: str | os.PathLike, num_q: int, num_db: int) -> tuple[np.ndarray, ...]:
    """The per-query lists of ``positives.npz``; InputError unless they fit ``num_q`` queries
    and ``num_db`` database images."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            indptr, indices, stored_db = z["indptr"], z["indices"], int(z["num_db"])
    except (OSError, KeyError, ValueError) as err:
        raise InputError(
            f"{path}: cannot read positives ({type(err).__name__}: {err}); expected an .npz with "
            "indptr, indices and num_db (icsa.data.ground_truth.write_positives)"
        ) from None
    if stored_db != num_db:
        raise InputError(
            f"{path}: num_db = {stored_db}, expected {num_db} (the split's database images; "
            "positives of another split?)"
        )
    if indptr.shape != (num_q + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise InputError(
            f"{path}: indptr has shape {indptr.shape}, expected {num_q + 1} non-decreasing "
            f"offsets from 0 (one list per query of the split's {num_q})"
        )
    if indptr[-1] != len(indices):
        raise InputError(
            f"{path}: indptr ends at {indptr[-1]}, expected len(indices) = {len(indices)}"
        )
    lists = [indices[indptr[i] : indptr[i + 1]] for i in range(num_q)]
    return check_positives(lists, num_db, str(path))


def read_object_lists(path: str | os.PathLike) -> list[np.ndarray]:
    """A reference's per-query lists (gsv-cities ``*_gt.npy`` / ``msls_val_pIdx.npy``, a
    pickled object array or a 2-D integer array). Reads pickle: only for trusted files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found, expected a per-query positives .npy")
    try:
        arr = np.load(path, allow_pickle=True)
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path}: cannot read ({err}); expected a per-query positives .npy"
        ) from None
    if arr.ndim == 0 or (arr.dtype != object and arr.ndim != 2):
        raise InputError(
            f"{path}: {arr.dtype} array of shape {arr.shape}, expected one list per query "
            "(an object array or a 2-D integer array)"
        )
    return [np.asarray(entry) for entry in arr]


def _by_name(ours: Sequence[str], theirs: Sequence[str], what: str) -> np.ndarray:
    """For each of ``theirs`` (a reference's name list), the index of the same file among
    ``ours``, matched by base name (the folders differ between repositories)."""
    index: dict[str, int] = {}
    for i, name in enumerate(ours):
        base = Path(str(name)).name
        if base in index:
            raise InputError(
                f"{what}: base name {base!r} occurs twice in the split; expected unique file "
                "names to match a reference's name list"
            )
        index[base] = i
    missing = [str(n) for n in theirs if Path(str(n)).name not in index]
    if missing:
        raise InputError(
            f"{what}: {len(missing)} reference names are not in the split (first: "
            f"{missing[0]!r}); expected every listed image among the split's files"
        )
    return np.array([index[Path(str(n)).name] for n in theirs], dtype=np.int64)


def lists_for_split(
    lists: Sequence[np.ndarray],
    db_images: Sequence[str],
    q_images: Sequence[str],
    ref_db: Sequence[str] | None = None,
    ref_q: Sequence[str] | None = None,
) -> tuple[np.ndarray, ...]:
    """A reference's per-query lists re-indexed into a split's order. With the reference's name
    lists (gsv-cities' ``*_dbImages.npy`` / ``*_qImages.npy``) rows and indices are matched by
    file name; without them the lists must already be in the split's order (gmberton's
    ``positives_per_query``: the same sorted glob as the benchmark layout)."""
    num_db, num_q = len(db_images), len(q_images)
    if (ref_db is None) != (ref_q is None):
        raise InputError("reference name lists: got one of database/queries, expected both")
    if ref_db is None:
        if len(lists) != num_q:
            raise InputError(f"{len(lists)} positive lists, expected {num_q} (one per query)")
        return check_positives(lists, num_db, "positives")
    if len(lists) != len(ref_q):
        raise InputError(
            f"{len(lists)} positive lists for {len(ref_q)} reference queries; expected one each"
        )
    db_map = _by_name(db_images, ref_db, "database")
    q_rows = _by_name(q_images, ref_q, "queries")
    checked = check_positives(lists, len(ref_db), "positives")
    out: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * num_q
    for row, positives in zip(q_rows, checked):
        out[row] = db_map[positives]
    if len(set(q_rows.tolist())) != num_q:
        raise InputError(
            f"the reference lists {len(set(q_rows.tolist()))} of the split's {num_q} queries; "
            "expected every query once"
        )
    return check_positives(out, num_db, "positives")


def frame_positives(
    db_frames: np.ndarray, q_frames: np.ndarray, tolerance: int
) -> tuple[np.ndarray, ...]:
    """Database images whose frame number is within ±``tolerance`` of each query's (inclusive).

    Nordland's convention: database and queries are the same train journey in two seasons, frame
    ``f`` of one matching frame ``f`` of the other; the first and last frames simply have fewer
    neighbours."""
    if int(tolerance) < 0:
        raise InputError(f"frame tolerance = {tolerance}, expected a non-negative number of frames")
    db = np.asarray(db_frames, dtype=np.int64)
    order = np.argsort(db, kind="stable")
    sorted_frames = db[order]
    q = np.asarray(q_frames, dtype=np.int64)
    lo = np.searchsorted(sorted_frames, q - int(tolerance), side="left")
    hi = np.searchsorted(sorted_frames, q + int(tolerance), side="right")
    return tuple(np.sort(order[a:b]).astype(np.int64) for a, b in zip(lo, hi))
