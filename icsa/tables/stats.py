"""Per-row statistics of a run table: mean ± std of a recall over seeds, Found@N per query.

The paired ΔR@1 intervals live in ``inference.py``; which of them are marked, in
``multiplicity.py``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from icsa.errors import InputError


class MeanStd(NamedTuple):
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for a single value
    n: int


def mean_std(values: list[float] | np.ndarray) -> MeanStd:
    """Mean and sample std (ddof=1) of per-seed values; std is nan with one seed."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"mean_std: got values of shape {arr.shape}, expected a non-empty list")
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return MeanStd(float(arr.mean()), std, int(arr.size))


def format_mean_std(value: MeanStd | float | None, digits: int = 1) -> str:
    """'84.1' for one seed, '84.1 ± 0.3' for several, '' for a missing value."""
    if value is None:
        return ""
    if not isinstance(value, MeanStd):
        return "" if math.isnan(float(value)) else f"{float(value):.{digits}f}"
    if value.n > 1 and not math.isnan(value.std):
        return f"{value.mean:.{digits}f} ± {value.std:.{digits}f}"
    return f"{value.mean:.{digits}f}"


def hits_at(first_hit_rank: np.ndarray, n: int) -> np.ndarray:
    """Found@N per query from the per-query rank of the first correct image (−1: none in top-k)."""
    ranks = np.asarray(first_hit_rank)
    return (ranks >= 0) & (ranks < n)
