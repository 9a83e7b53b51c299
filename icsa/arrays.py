"""Reading the numpy files a step is handed (descriptors, per-query results, PCA whitening).

numpy says what is wrong with a file but not which file: a zero-byte ``.npy`` is ``EOFError: No
data left in file``, a truncated ``.npz`` a ``BadZipFile``. In a pipeline of hundreds of such
files the path is what the user needs, so each failure becomes one InputError naming it.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icsa.errors import InputError

# What numpy raises for a file that is not what its name says: empty, truncated, another format
# (a pickle is refused with ValueError), or a compressed member that does not inflate.
UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _unreadable(path: Path, what: str, kind: str, err: Exception) -> InputError:
    size = f"{path.stat().st_size:,} bytes" if path.is_file() else "not a file"
    return InputError(
        f"{what} {path}: cannot be read as a numpy {kind} ({size}; {type(err).__name__}: "
        f"{err}); expected the file as the icsa step wrote it"
    )


def open_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """The ``.npy`` at ``path`` memory-mapped read-only (no pickles); ``what`` it holds
    ("query descriptors") starts the error message."""
    path = Path(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except UNREADABLE as err:
        raise _unreadable(path, what, ".npy array", err) from err
    if not isinstance(array, np.ndarray):  # an .npz under a .npy name
        raise InputError(f"{what} {path}: a numpy .npz archive, expected a .npy array")
    return array


def read_npz(path: str | os.PathLike, keys: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` at ``path``, read into memory (no pickles)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except UNREADABLE as err:
        raise _unreadable(path, what, ".npz archive", err) from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InputError(f"{what} {path}: a numpy .npy array, expected a .npz archive")
    with data:
        files = sorted(data.files)
        try:  # members inflate only now
            arrays = {key: np.asarray(data[key]) for key in keys if key in files}
        except UNREADABLE as err:
            raise _unreadable(path, what, ".npz archive", err) from err
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise InputError(f"{what} {path}: no {missing} arrays in {files}; expected {list(keys)}")
    return arrays
