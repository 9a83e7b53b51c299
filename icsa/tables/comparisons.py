"""ΔR@1 columns of a run table: a row against its attention baseline and its block baseline.

Two comparisons per row, each paired per seed on the same queries:

- ``dR@1`` — the row against the table's ``baseline`` attention (same backbone, block, seeds);
- ``dR@1_block`` — the row against the same network with the ``block_baseline`` block
  (``none``: only attention and NetVLAD trained), i.e. what training the backbone added.

Each difference carries the two-level (seeds × queries) interval ``_low``/``_high`` — the one a
reader should use, it covers training randomness — the query-only interval ``_qlow``/``_qhigh``
(what changes with another evaluation set alone), and ``_marked``: the two-level interval
excludes 0. Values are percentage points.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from icsa.tables.stats import paired_bootstrap, seed_query_bootstrap

SUFFIXES = ("", "_low", "_high", "_qlow", "_qhigh")


def empty_columns(prefix: str) -> dict[str, Any]:
    """The columns of a comparison that does not apply to a row (it is its own baseline)."""
    return {**{f"{prefix}{s}": math.nan for s in SUFFIXES}, f"{prefix}_marked": False}


def compare_columns(
    prefix: str,
    hits: np.ndarray,
    baseline_hits: np.ndarray,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """``prefix``, ``prefix_low`` … ``prefix_marked`` for Found@1 [S, M] vs the baseline's."""
    two = seed_query_bootstrap(hits, baseline_hits, samples, confidence, seed)
    flat = paired_bootstrap(hits, baseline_hits, samples, confidence, seed)
    return {
        prefix: 100.0 * two.difference,
        f"{prefix}_low": 100.0 * two.low,
        f"{prefix}_high": 100.0 * two.high,
        f"{prefix}_qlow": 100.0 * flat.low,
        f"{prefix}_qhigh": 100.0 * flat.high,
        f"{prefix}_marked": two.excludes_zero,
    }


def format_difference(rec: dict[str, Any], prefix: str) -> str:
    """'+3.1 [+1.2, +5.0]*' (two-level interval; * = excludes 0), '' when not compared."""
    value = rec.get(prefix)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    mark = "*" if rec.get(f"{prefix}_marked") else ""
    return f"{value:+.1f} [{rec[f'{prefix}_low']:+.1f}, {rec[f'{prefix}_high']:+.1f}]{mark}"


def format_query_interval(rec: dict[str, Any], prefix: str) -> str:
    """'[+2.0, +4.2]' (queries only), '' when not compared."""
    low = rec.get(f"{prefix}_qlow")
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return ""
    return f"[{low:+.1f}, {rec[f'{prefix}_qhigh']:+.1f}]"


def interval_note(confidence: float, samples: int, seed: int, num_seeds: int) -> str:
    """The table note that says what the intervals cover."""
    if num_seeds > 1:
        covers = (
            f"a two-level paired bootstrap {confidence:.0%} interval: each of {samples} resamples "
            f"draws the {num_seeds} seeds with replacement, then the queries with replacement, so "
            "the interval covers training randomness (seeds) as well as which queries were "
            "sampled. The query-only interval (seed-averaged differences, queries resampled) "
            "is shown beside it; it is narrower because it ignores seed variance."
        )
    else:
        covers = (
            f"a paired bootstrap {confidence:.0%} interval over queries ({samples} resamples); "
            "with one seed it cannot cover training randomness — run several seeds for that."
        )
    return (
        "ΔR@1: Recall@1 minus the baseline row's (same backbone and seed; vs baseline: same "
        "block, the baseline attention; vs block none: same network with only attention and "
        f"NetVLAD trained), in percentage points, with {covers} * marks a difference whose "
        f"interval excludes 0 (bootstrap seed {seed})."
    )
