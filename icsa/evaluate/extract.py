"""Descriptor extraction streamed to a memory-mapped ``.npy``, so memory stays flat.

Pitts250k's database is 250k × 32,768 floats (32 GB in float32): it is never held in memory.
The ``.npy`` header is written once with ``np.lib.format.open_memmap``; rows are then written
through a window of at most ``flush_rows`` rows mapped at a time, flushed and unmapped before
the next, so the process maps a bounded slice of the file whatever its size. The file is
written under a temporary name and renamed when complete (``icsa.io.atomic_path``). Rows are in
dataset (dbStruct) order; a non-finite descriptor stops extraction naming the images.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from icsa.errors import InputError
from icsa.fast_inference import bf16_autocast, channels_last
from icsa.io import atomic_path, require_free_space, reserve_space
from icsa.step_settings import DTYPES, ExtractSettings
from icsa.utils import resolve_device, set_threads

# The defaults of the workflow's `extract:` section and `icsa extract` (icsa.step_settings).
# ``fast`` is its fast_inference resolved for the device: the default "off" is False.
DEFAULTS = ExtractSettings()


def _loader(dataset: Dataset, batch_size: int, num_workers: int, device: torch.device):
    if batch_size < 1 or num_workers < 0:
        raise InputError(
            f"batch_size = {batch_size}, num_workers = {num_workers}; expected >= 1, >= 0"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )


@contextlib.contextmanager
def _restore_format(model: torch.nn.Module, converted: bool) -> Iterator[None]:
    try:
        yield
    finally:
        if converted:
            model.to(memory_format=torch.contiguous_format)


def _image_names(dataset: Dataset, rows: np.ndarray) -> list[str]:
    paths = getattr(dataset, "paths", None)
    return [str(paths[r]) if paths is not None else f"item {r}" for r in rows]


def iter_descriptors(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = DEFAULTS.batch_size,
    num_workers: int = DEFAULTS.workers,
    device: str | torch.device = "auto",
    fast: bool = False,
    desc: str | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, float32 descriptors[B, D])`` per batch, in dataset order.

    ``fast``: bfloat16 autocast and channels_last (icsa.fast_inference; the caller resolves
    the setting for the device); the model is back in its own memory format afterwards."""
    device = resolve_device(device) if isinstance(device, str) else device
    model = channels_last(model.to(device).eval(), fast)
    start = 0
    progress = tqdm(total=len(dataset), desc=desc, unit="img", mininterval=5, disable=False)
    with torch.inference_mode(), progress, _restore_format(model, fast):
        for batch in _loader(dataset, batch_size, num_workers, device):
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            if isinstance(batch, (list, tuple)) and len(batch) > 1:
                got = np.asarray(batch[1])
                if not np.array_equal(got, np.arange(start, start + len(images))):
                    raise InputError(
                        f"dataset returned items {got[:4]}…, expected rows from {start}"
                    )
            with bf16_autocast(device, fast):
                out = model(channels_last(images.to(device, non_blocking=True), fast))  # [B, D]
            out = out.float().cpu().numpy()
            bad = ~np.isfinite(out).all(axis=1)
            if bad.any():
                names = _image_names(dataset, start + np.flatnonzero(bad))
                shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
                raise InputError(
                    f"{len(names)} non-finite (NaN/inf) descriptor(s) for image(s) {shown}; "
                    "expected finite descriptors (corrupt image or diverged model?)"
                )
            yield start, out
            start += len(out)
            progress.update(len(out))


class _WindowWriter:
    """Writes rows of an existing ``.npy`` through a sliding memory map of ``window_rows`` rows."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype: str, window_rows: int):
        require_free_space(path, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        reserve_space(path, path.stat().st_size)  # the disk refuses now, never with SIGBUS
        self.offset, self.path, self.shape, self.dtype = header.offset, path, shape, dtype
        del header  # header written; the data area is mapped window by window
        self.window_rows = max(1, window_rows)
        self.row_bytes = np.dtype(dtype).itemsize * shape[1]
        self.window: np.memmap | None = None
        self.window_start = 0

    def _map(self, row: int) -> None:
        self.close()
        rows = min(self.window_rows, self.shape[0] - row)
        self.window = np.memmap(
            self.path,
            dtype=self.dtype,
            mode="r+",
            shape=(rows, self.shape[1]),
            offset=self.offset + row * self.row_bytes,
        )
        self.window_start = row

    def write(self, start: int, rows: np.ndarray) -> None:
        done = 0
        while done < len(rows):
            row = start + done
            if self.window is None or not (
                self.window_start <= row < self.window_start + len(self.window)
            ):
                self._map(row)
            pos = row - self.window_start
            take = min(len(rows) - done, len(self.window) - pos)
            self.window[pos : pos + take] = rows[done : done + take]
            done += take

    def close(self) -> None:
        if self.window is not None:
            self.window.flush()
            self.window = None  # unmapping drops the window's pages from this process


def extract_descriptors(
    model: torch.nn.Module,
    dataset: Dataset,
    out_path: str | os.PathLike,
    batch_size: int = DEFAULTS.batch_size,
    num_workers: int = DEFAULTS.workers,
    dtype: str = DEFAULTS.dtype,
    device: str | torch.device = "auto",
    fast: bool = False,
    flush_rows: int | None = None,
    memory_budget_mb: float | None = None,
    threads: int | None = None,
) -> Path:
    """Descriptors of every item of ``dataset`` (in order) → ``out_path`` ([N, D] ``.npy``).

    At most ``flush_rows`` rows (or ``memory_budget_mb`` worth) are mapped at once; by default
    a window of 4096 rows (0.5 GB at 32,768-D float32).
    """
    if dtype not in DTYPES:
        raise InputError(f"dtype = {dtype!r}, expected one of {list(DTYPES)}")
    if len(dataset) == 0:
        raise InputError(f"{out_path}: the dataset has no images, expected at least one")
    set_threads(threads)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        writer: _WindowWriter | None = None
        for start, rows in iter_descriptors(
            model, dataset, batch_size, num_workers, device, fast, desc=out_path.name
        ):
            if writer is None:  # the descriptor size is known once the first batch is out
                row_bytes = np.dtype(dtype).itemsize * rows.shape[1]
                window = flush_rows or 4096
                if memory_budget_mb is not None:
                    window = int(memory_budget_mb * 2**20 // row_bytes)
                writer = _WindowWriter(tmp, (len(dataset), rows.shape[1]), dtype, window)
            writer.write(start, rows.astype(dtype))
        writer.close()
    return out_path


def extract_in_memory(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = DEFAULTS.batch_size,
    num_workers: int = DEFAULTS.workers,
    dtype: str = DEFAULTS.dtype,
    device: str | torch.device = "auto",
    fast: bool = False,
) -> np.ndarray:
    """The same descriptors as :func:`extract_descriptors`, as one in-memory array (small sets)."""
    if dtype not in DTYPES:
        raise InputError(f"dtype = {dtype!r}, expected one of {list(DTYPES)}")
    parts = [
        rows.astype(dtype)
        for _, rows in iter_descriptors(model, dataset, batch_size, num_workers, device, fast)
    ]
    return np.concatenate(parts, axis=0)
