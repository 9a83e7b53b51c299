"""Frozen-prefix cache: the output of the frozen backbone blocks, computed once per image.

When blocks below the lowest trained block k are frozen, ``model.frozen_prefix(image)`` never
changes during training, so the loop computes it once into a memory-mapped ``.npy`` per image
list and trains / refreshes the mining cache through ``model.forward_from_prefix``. The files lie
in the run's scratch (``RUN/state/prefix_cache/*.npy`` plus a ``.json`` saying what they were
computed from, and the file's size and SHA-256), are reused when a run resumes once they verify,
and are safe to delete (they are rebuilt). float16 halves
the disk and read cost; ``benchmarks/results/train.md`` records that it leaves recall unchanged.

:class:`InputSource` hides whether a model input comes from the cache or from decoding images.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from icsa.data import ImageDataset
from icsa.fast_inference import bf16_autocast
from icsa.io import atomic_path, file_digest, require_free_space, reserve_space, write_json

log = logging.getLogger(__name__)

FLOAT16_MAX = float(np.finfo(np.float16).max)


class InputSource:
    """Model inputs for one image list: cached prefix rows, or decoded images."""

    def __init__(
        self,
        dataset: ImageDataset,
        prefix: np.ndarray | None = None,
        pin_memory: bool = False,
        decode_threads: int = 0,
    ) -> None:
        self.dataset = dataset
        self.prefix = prefix
        self.pin_memory = pin_memory  # decoded batches in page-locked memory (CUDA)
        self.on_device: torch.Tensor | None = None  # the prefix rows in GPU memory, if kept
        # A training step's images decoded by this many threads (PIL releases the GIL while it
        # decodes and resizes); 0 or 1: in the calling thread. The batch order is the same.
        self.decode_threads = decode_threads
        self._pool: ThreadPoolExecutor | None = None

    def _image(self, index: int) -> torch.Tensor:
        return self.dataset[int(index)][0]

    def _decode(self, indices: np.ndarray) -> list[torch.Tensor]:
        if self.decode_threads <= 1 or len(indices) < 2:
            return [self._image(i) for i in indices]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode")
        return list(self._pool.map(self._image, indices))

    @property
    def cached(self) -> bool:
        return self.prefix is not None

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, indices: np.ndarray) -> torch.Tensor:
        """Inputs of ``indices`` (any order, repeats allowed) as one float32 batch (on the GPU
        when the prefix is kept there)."""
        if self.on_device is not None:
            rows = torch.as_tensor(np.asarray(indices), device=self.on_device.device)
            return self.on_device[rows].float()
        if self.prefix is not None:
            return torch.from_numpy(np.asarray(self.prefix[np.asarray(indices)], np.float32))
        batch = torch.stack(self._decode(np.asarray(indices)))
        return batch.pin_memory() if self.pin_memory else batch

    def batches(
        self, indices: np.ndarray, batch_size: int, num_workers: int = 0
    ) -> Iterator[torch.Tensor]:
        """Inputs of ``indices`` in order, ``batch_size`` at a time."""
        if self.prefix is not None:
            for start in range(0, len(indices), batch_size):
                yield self.get(indices[start : start + batch_size])
            return
        subset = Subset(self.dataset, [int(i) for i in indices])
        loader = DataLoader(
            subset, batch_size=batch_size, num_workers=num_workers, pin_memory=self.pin_memory
        )
        for images, _ in loader:
            yield images


@torch.no_grad()
def prefix_shape(model: torch.nn.Module, image_size: tuple[int, int]) -> tuple[int, ...]:
    """Shape of one image's frozen prefix (one blank image through the frozen blocks)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    shape = tuple(model.frozen_prefix(torch.zeros(1, 3, *image_size, device=device)).shape[1:])
    model.train(was_training)
    return shape


def _fingerprint(model: torch.nn.Module, dataset: ImageDataset, dtype: str, fast: bool) -> dict:
    """What the cache depends on: the frozen weights' recipe, the image list, size, dtype and
    the arithmetic (bfloat16 or float32)."""
    cfg = model.config
    names = "\n".join(str(p) for p in dataset.paths).encode()
    return {
        "backbone": cfg["backbone"],
        "weights": cfg["weights"],
        "init_seed": cfg.get("init_seed", 0),
        "lowest_trained_block": str(cfg["lowest_trained_block"]),
        "image_size": list(dataset.image_size),
        "dtype": dtype,
        "num_images": len(dataset),
        "paths_sha1": hashlib.sha1(names).hexdigest(),
        **({"arithmetic": "bfloat16"} if fast else {}),  # float32 caches keep their old record
    }


def open_or_build_prefix_cache(
    model: torch.nn.Module,
    dataset: ImageDataset,
    path: Path,
    dtype: str,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    fast: bool = False,
) -> np.ndarray:
    """Memory-map ``path`` (``.npy``) if it matches this model and image list, else build it
    (``fast``: under bfloat16 autocast, icsa.fast_inference)."""
    meta_path = path.with_suffix(".json")
    fingerprint = _fingerprint(model, dataset, dtype, fast)
    if _verified_cache(path, meta_path, fingerprint):
        return np.load(path, mmap_mode="r")
    meta_path.unlink(missing_ok=True)
    shape = (len(dataset), *prefix_shape(model, dataset.image_size))
    was_training = model.training
    model.eval()  # frozen blocks are in eval mode during training too (fixed BatchNorm)
    with atomic_path(path) as tmp:
        require_free_space(tmp, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=shape)
        reserve_space(tmp, tmp.stat().st_size)
        loader = DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )  # fmt: skip
        row = 0
        with torch.no_grad():
            for images, _ in tqdm(loader, desc=f"prefix cache {path.stem}", mininterval=5):
                with bf16_autocast(device, fast):
                    prefix = model.frozen_prefix(images.to(device)).float().cpu().numpy()
                if dtype == "float16" and np.abs(prefix).max(initial=0.0) > FLOAT16_MAX:
                    raise RuntimeError(
                        f"prefix cache {path}: values exceed the float16 range "
                        f"({np.abs(prefix).max():.3g}); set prefix_cache_dtype to 'float32'"
                    )
                out[row : row + len(prefix)] = prefix
                row += len(prefix)
        out.flush()
        del out
    model.train(was_training)
    write_json(meta_path, {**fingerprint, **_content_record(path)})
    return np.load(path, mmap_mode="r")


# What the record adds about the file itself: verified before a cache is reused.
CONTENT_KEYS = ("file_bytes", "sha256")


def _content_record(path: Path) -> dict[str, Any]:
    return {"file_bytes": path.stat().st_size, "sha256": file_digest(path)}


def _verified_cache(path: Path, meta_path: Path, fingerprint: dict[str, Any]) -> bool:
    """Whether the cache at ``path`` was made for ``fingerprint`` and is intact: its record
    matches, and the file has the recorded size (a truncated file) and SHA-256 (flipped or
    zeroed bytes behind an intact header; one read of the file, ~1.8 GB/s). A cache that was
    made for something else is rebuilt quietly; a damaged one with a warning line."""
    if not (path.is_file() and meta_path.is_file()):
        return False
    try:
        record = json.loads(meta_path.read_text())
        made_for = {k: v for k, v in record.items() if k not in CONTENT_KEYS}
        recorded = {k: record[k] for k in CONTENT_KEYS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("%s: unreadable record (%s); rebuilding the prefix cache", meta_path, err)
        return False
    if made_for != fingerprint:
        return False
    size = path.stat().st_size
    if size != recorded["file_bytes"]:
        log.warning("%s: %d bytes, its record says %s; rebuilding the prefix cache", path,
                    size, recorded["file_bytes"])  # fmt: skip
        return False
    if file_digest(path) != recorded["sha256"]:
        log.warning("%s: its bytes changed since it was built (SHA-256 differs from %s); "
                    "rebuilding the prefix cache", path, meta_path.name)  # fmt: skip
        return False
    return True


# Of the GPU memory free when training starts, the share the prefix caches may take: the rest
# is the trained blocks' activations and gradients, and cuDNN's workspaces.
GPU_PREFIX_SHARE = 0.5
UPLOAD_ROWS = 256  # rows copied to the GPU at a time (the file is never read whole into RAM)


def keep_prefix_on_gpu(
    sources: list[InputSource], device: torch.device, share: float = GPU_PREFIX_SHARE
) -> bool:
    """Copy every cached prefix to GPU memory (in its file's dtype) if together they fit in
    ``share`` of the free memory; then a training step reads its inputs without a host copy.
    All or none, as a step reads database and query rows together. True when kept."""
    cached = [s for s in sources if s.prefix is not None]
    need = sum(s.prefix.nbytes for s in cached)
    if not cached or need > share * torch.cuda.mem_get_info(device)[0]:
        return False
    for src in cached:
        gpu = torch.empty(src.prefix.shape, dtype=getattr(torch, src.prefix.dtype.name),
                          device=device)  # fmt: skip
        for start in range(0, len(src.prefix), UPLOAD_ROWS):
            rows = np.array(src.prefix[start : start + UPLOAD_ROWS])  # a writable copy
            gpu[start : start + len(rows)] = torch.from_numpy(rows).to(device)
        src.on_device = gpu
    return True


def plan_prefix_cache(
    sizes: dict[str, int], bytes_per_image: int, budget_mb: float
) -> dict[str, bool]:
    """Which image lists to cache: in the given (priority) order, while the total fits."""
    plan, used = {}, 0
    for name, count in sizes.items():
        need = count * bytes_per_image
        plan[name] = used + need <= budget_mb * 2**20
        used += need if plan[name] else 0
    return plan
