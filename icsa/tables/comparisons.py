"""ΔR@1 columns of a run table: a row against its attention baseline and its block baseline.

Two comparisons per row, each paired per seed on the same queries:

- ``dR@1`` — the row against the table's ``baseline`` attention (same backbone, block, seeds);
- ``dR@1_block`` — the row against the same network with the ``block_baseline`` block
  (``none``: only attention and NetVLAD trained), i.e. what training the backbone added.

Each difference (percentage points) carries
- ``_low``/``_high``: the interval of icsa/tables/inference.py, valid at the seed count run
  (seeds and queries; with one seed queries only);
- ``_qlow``/``_qhigh``: the query-only interval (seed-averaged differences, paired t over
  queries): what another evaluation set alone would change;
- ``_p``: the unadjusted two-sided p; ``_padj``: adjusted over the table's family
  (icsa/tables/multiplicity.py); ``_marked``: ``_padj`` < α with at least two seeds;
- ``_mde``: the smallest true difference the design detects with the configured power at the
  family's strictest level (an unmarked difference reads "no effect larger than this");
- ``_seeds``: the per-seed differences, "/"-joined.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from icsa.tables.inference import difference_interval, minimum_detectable_effect
from icsa.tables.multiplicity import adjust, strictest_level

SUFFIXES = ("", "_low", "_high", "_qlow", "_qhigh", "_p", "_padj", "_mde")
PREFIXES = ("dR@1", "dR@1_block")


def empty_columns(prefix: str) -> dict[str, Any]:
    """The columns of a comparison that does not apply to a row (it is its own baseline)."""
    return {
        **{f"{prefix}{s}": math.nan for s in SUFFIXES},
        f"{prefix}_seeds": "",
        f"{prefix}_marked": False,
    }


def format_seeds(values: list[float] | tuple[float, ...], digits: int = 1) -> str:
    """Per-seed values as one cell: '51.0/58.9/47.4'."""
    return "/".join(f"{v:.{digits}f}" for v in values)


def parse_seeds(cell: Any) -> list[float]:
    """The values of a :func:`format_seeds` cell ([] for an empty or missing one)."""
    return [float(v) for v in cell.split("/")] if isinstance(cell, str) and cell else []


def compare_columns(
    prefix: str, hits: np.ndarray, baseline_hits: np.ndarray, confidence: float
) -> dict[str, Any]:
    """``prefix``, ``prefix_low`` … for Found@1 [S, M] vs the baseline's (marks come later,
    from :func:`mark_family`)."""
    ci = difference_interval(hits, baseline_hits, confidence)
    queries = difference_interval(
        np.mean(hits, axis=0, keepdims=True), np.mean(baseline_hits, axis=0, keepdims=True),
        confidence,
    )  # fmt: skip
    return {
        prefix: 100.0 * ci.difference,
        f"{prefix}_low": 100.0 * ci.low,
        f"{prefix}_high": 100.0 * ci.high,
        f"{prefix}_qlow": 100.0 * queries.low,
        f"{prefix}_qhigh": 100.0 * queries.high,
        f"{prefix}_p": ci.p_value,
        f"{prefix}_padj": math.nan,
        f"{prefix}_mde": math.nan,
        f"{prefix}_seeds": format_seeds([100.0 * x for x in ci.per_seed]),
        f"{prefix}_marked": False,
        # Kept for mark_family (the MDE needs the family's size); dropped before the table.
        f"_{prefix}_analyses": ci.analyses,
    }


def mark_family(records: list[dict[str, Any]], confidence: float, method: str, power: float) -> int:
    """Adjust the p of every comparison in ``records`` over the whole table, set ``_padj``,
    ``_marked`` (at least two seeds and adjusted p < α) and ``_mde``; returns the family size."""
    alpha = 1.0 - confidence
    family = [(rec, p) for rec in records for p in PREFIXES if f"_{p}_analyses" in rec]
    adjusted = adjust(np.array([rec[f"{p}_p"] for rec, p in family]), method)
    level = strictest_level(alpha, len(family), method)
    for (rec, prefix), padj in zip(family, adjusted):
        analyses = rec.pop(f"_{prefix}_analyses")
        several = analyses.num_seeds > 1
        rec[f"{prefix}_padj"] = float(padj)
        rec[f"{prefix}_marked"] = bool(several and padj < alpha)
        if several:  # one seed: training randomness is not covered, nothing to resolve
            rec[f"{prefix}_mde"] = 100.0 * float(minimum_detectable_effect(analyses, level, power))
    return len(family)


def format_difference(rec: dict[str, Any], prefix: str) -> str:
    """'+3.1 [+1.2, +5.0]*' (* = marked after adjustment), '' when not compared."""
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


def format_mde(rec: dict[str, Any], prefix: str) -> str:
    """'±4.2' (the smallest detectable |ΔR@1|), '' when not compared or with one seed."""
    value = rec.get(f"{prefix}_mde")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"±{value:.1f}"


METHOD_NOTES = {
    "holm": "Holm's step-down procedure (the chance of any false * in the table is at most {a})",
    "bh": "Benjamini–Hochberg (the expected share of false * among the * is at most {a})",
    "none": "no adjustment (each comparison at level {a} on its own)",
}


def interval_note(confidence: float, num_seeds: int, family: int, method: str, power: float) -> str:
    """The table note that says what the intervals cover, what * means and what MDE is."""
    alpha = f"{1 - confidence:.0%}"
    if num_seeds > 1:
        covers = (
            f"a {confidence:.0%} interval valid with {num_seeds} seeds: the wider of the paired "
            f"Student t interval over the {num_seeds} per-seed differences ({num_seeds - 1} "
            "degrees of freedom; it covers training randomness) and the crossed seeds × queries "
            "interval (which also covers the part of query sampling that all seeds share; "
            "Satterthwaite's degrees of freedom). The query-only interval beside it ignores seed "
            "variance: it says what another evaluation set alone would change."
        )
        marks = (
            f"{family} comparisons in this table; * marks a difference whose p (the larger of "
            f"the two analyses) stays below {alpha} after {METHOD_NOTES[method].format(a=alpha)}."
            " The intervals shown are unadjusted. MDE: the smallest true |ΔR@1| that this design "
            f"(seeds, queries, observed variances) would mark with {power:.0%} power at the "
            "table's strictest level; no * means no effect larger than the MDE was seen, not "
            "that there is no effect."
        )
    else:
        covers = (
            f"a paired t {confidence:.0%} interval over queries: with one seed it cannot cover "
            "training randomness (another seed may differ by more than the interval), so no "
            "difference is marked as established — run several seeds for that."
        )
        marks = ""
    return (
        "ΔR@1: Recall@1 minus the baseline row's (same backbone and seed; vs baseline: same "
        "block, the baseline attention; vs block none: same network with only attention and "
        f"NetVLAD trained), in percentage points, with {covers} {marks}"
    ).rstrip()
