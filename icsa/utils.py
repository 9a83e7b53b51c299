"""Small shared helpers: seeding, threads and device choice.

torch is imported inside each helper, so that the CLI modules that import these helpers load
torch only when a command runs, never for ``--help`` (icsa/lazy.py).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so CPU runs repeat bit-for-bit."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Make torch use the thread count the caller was given (Snakemake's ``threads``)."""
    if threads is not None and threads > 0:
        import torch

        torch.set_num_threads(threads)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken as given."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
