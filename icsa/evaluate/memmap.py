"""Reading row blocks of memory-mapped descriptor files without growing the process.

Pages of a read-only ``np.memmap`` that were touched stay mapped into the process, so reading a
32 GB database block by block would end with 32 GB resident (reclaimable page cache, but it
counts as RSS and crowds out other jobs). :func:`read_rows` copies a block out and then tells the
kernel (``madvise(MADV_DONTNEED)``) that the mapping's pages are no longer needed: the data stays
in the page cache, the process's footprint stays at the blocks it holds.
"""

from __future__ import annotations

import mmap

import numpy as np


def release_pages(arr: np.ndarray) -> None:
    """Drop a read-only memmap's resident pages from this process (no-op for other arrays)."""
    handle = getattr(arr, "_mmap", None)  # numpy keeps the mmap object of a memmap here
    # Only read-only mappings: on a private ("c") mapping DONTNEED would discard changes.
    if isinstance(arr, np.memmap) and arr.mode == "r" and isinstance(handle, mmap.mmap):
        handle.madvise(mmap.MADV_DONTNEED)


def read_rows(
    arr: np.ndarray, start: int, stop: int, dtype=np.float32, piece_bytes: int = 32 * 2**20
) -> np.ndarray:
    """Rows ``start:stop`` of ``arr`` as a C-contiguous array of ``dtype`` owned by the caller.

    A memmap is copied ``piece_bytes`` at a time, releasing its pages after each piece, so the
    copy never has the whole block resident twice (mapped and copied).
    """
    if not isinstance(arr, np.memmap):
        return np.ascontiguousarray(arr[start:stop], dtype=dtype)
    stop = min(stop, len(arr))
    block = np.empty((max(0, stop - start), *arr.shape[1:]), dtype=dtype)
    step = max(1, piece_bytes // max(1, arr[:1].nbytes))
    for s in range(start, stop, step):
        block[s - start : s - start + step] = arr[s : min(s + step, stop)]
        release_pages(arr)
    return block
