"""Which differences of a table are marked, when a table makes many comparisons at once.

A run table compares every "with module" row with its baseline and every trained block with
block none: Table 5 makes 16 comparisons. At 5 % each, a table of 16 null differences carries
at least one star by chance more often than not (1 − 0.95¹⁶ = 56 %). The marker is therefore
decided over the table's whole family:

- ``holm`` (default) — Holm's (1979) step-down procedure: the family-wise error rate (the chance
  of *any* false star in the table) is at most α, under any dependence between comparisons.
- ``bh`` — Benjamini & Hochberg (1995): the expected share of false stars among the stars is at
  most α (valid for independent or positively dependent tests), a weaker, more powerful claim.
- ``none`` — each comparison at level α on its own.

The intervals shown stay the unadjusted ones; a star says the adjusted p is below α.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from icsa.errors import InputError

METHODS = ("holm", "bh", "none")


def adjust(p_values: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values (same order) under ``method``; compare them with α."""
    p = np.asarray(p_values, dtype=np.float64)
    if method not in METHODS:
        raise InputError(f"statistics.multiplicity: {method!r}; expected one of {list(METHODS)}")
    if p.size == 0 or method == "none":
        return p.copy()
    if method == "bh":
        return stats.false_discovery_control(p, method="bh")
    # Holm: the k-th smallest p (0-based) is multiplied by m − k, then made monotone.
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def strictest_level(alpha: float, family_size: int, method: str) -> float:
    """The smallest per-comparison level the method may test at (its first step): α/m under
    Holm and BH, α without adjustment. A minimum detectable effect at this level holds for
    every comparison of the table."""
    if method == "none" or family_size <= 1:
        return alpha
    return alpha / family_size
