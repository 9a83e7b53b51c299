"""Small shared helpers: seeding, threads and device choice."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so CPU runs repeat bit-for-bit."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Make torch use the thread count the caller was given (Snakemake's ``threads``)."""
    if threads is not None and threads > 0:
        torch.set_num_threads(threads)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
