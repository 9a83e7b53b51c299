"""The interval, test and minimum detectable effect of a paired ΔR@1 with few seeds.

A "with module" row is compared with its baseline row on the same queries, each seed's model
with the baseline trained with the same seed, giving a [seeds × queries] matrix of differences
d_sq = a_sq − b_sq (Found@N, so −1, 0 or 1). The claim a table makes is about the expected
difference over *training runs* (seeds) and over *evaluation queries* of the same kind. Seeds
and queries are crossed random factors (every seed is evaluated on every query), the balanced
two-way random-effects model d_sq = μ + u_s + v_q + w_sq (Searle, Casella & McCulloch 1992,
*Variance Components*, ch. 4; the "subjects × items" design of Clark 1973 and Baayen, Davidson &
Bates 2008). Its mean squares give

    Var(d̄) = σ_u²/S + σ_v²/M + σ_w²/(SM),   estimated by (MS_seed + MS_query − MS_resid)/(SM).

With the 3 seeds a table usually runs, seed-to-seed variance dominates and MS_seed has only S − 1
degrees of freedom: a normal or percentile-bootstrap interval then under-covers (measured for
the two-level bootstrap this module replaces: 83 % instead of 95 % at 3 seeds when the per-seed
differences spread as they do in our Table 5; benchmarks/results/interval_coverage.md).
Student's t with the right degrees of freedom does not. Two analyses are made:

- **per seed** — the paired t-interval over the S per-seed differences D_s = mean_q d_sq, with
  S − 1 degrees of freedom. Each D_s already contains its own query noise (σ_w²/M), so with
  normal D_s the interval is exact for the mean over training runs *on these queries*.
- **crossed** — the same variance plus the part of query sampling that all seeds share
  (σ_v²/M, which the per-seed spread cannot show): V = (MS_seed + max(MS_query − MS_resid, 0))
  /(SM), a negative variance component truncated at 0, with Satterthwaite's (1946) degrees of
  freedom for the sum of mean squares, never fewer than MS_seed's S − 1.

The interval reported is the wider of the two (both are centred on d̄, so it contains both), and
the p-value is the larger of the two. A difference is therefore called real only when it is
real for both analyses: never when the per-seed t-interval includes 0, and never when the
shared query component explains it. Coverage is at least that of either analysis; the
simulation tests (tests/test_intervals.py) check it at 1, 2, 3, 5, 10 seeds and 100 and 700
queries, from negligible to dominant seed variance.

With one seed the per-seed analysis does not exist: the interval is the paired t-interval over
queries (queries only), which cannot cover training randomness, and nothing is marked.

The minimum detectable effect of a design at level α and power 1 − β is (t_{1−α/2,ν} +
t_{1−β,ν})·SE (Bloom 1995, "Minimum detectable effects", Evaluation Review 19(5)), taken here
for the analysis that needs more (the larger of the two), with the observed SE.

All functions take d as [..., S, M] (leading dimensions are independent comparisons), so the
coverage simulations run the same code on thousands of replications at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from icsa.errors import InputError


@dataclass(frozen=True)
class Analyses:
    """Per-seed and crossed standard errors and degrees of freedom, each [...] (fractions)."""

    difference: np.ndarray  # mean of d over seeds × queries
    seed_se: np.ndarray  # sd(D_s)/√S; nan with one seed
    seed_df: np.ndarray  # S − 1
    crossed_se: np.ndarray  # √V of the crossed model (one seed: the queries-only SE)
    crossed_df: np.ndarray  # Satterthwaite's (one seed: M − 1)
    num_seeds: int
    num_queries: int


def paired_differences(hits: np.ndarray, baseline_hits: np.ndarray, name: str) -> np.ndarray:
    """Checked [S, M] matrix of per-seed, per-query differences (model − baseline)."""
    a = np.atleast_2d(np.asarray(hits, dtype=np.float64))
    b = np.atleast_2d(np.asarray(baseline_hits, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise InputError(
            f"{name}: model hits {a.shape} vs baseline hits {b.shape}; expected the same "
            "[seeds, queries] shape with at least 2 queries (same evaluation set and seeds)"
        )
    return a - b


def analyse(d: np.ndarray) -> Analyses:
    """Mean squares of the crossed seeds × queries design of ``d`` [..., S, M]."""
    d = np.asarray(d, dtype=np.float64)
    s, m = d.shape[-2:]
    grand = d.mean(axis=(-2, -1))  # [...]
    per_seed = d.mean(axis=-1)  # [..., S]
    per_query = d.mean(axis=-2)  # [..., M]
    ss_query = s * ((per_query - grand[..., None]) ** 2).sum(axis=-1)
    ms_query = ss_query / (m - 1)
    if s == 1:  # queries only: the paired t over queries
        se = np.sqrt(ms_query / m)
        df = np.full(grand.shape, float(m - 1))
        nan = np.full(grand.shape, math.nan)
        return Analyses(grand, nan, nan, se, df, 1, m)
    ss_seed = m * ((per_seed - grand[..., None]) ** 2).sum(axis=-1)
    ss_total = ((d - grand[..., None, None]) ** 2).sum(axis=(-2, -1))
    ms_seed = ss_seed / (s - 1)
    df_resid = (s - 1) * (m - 1)
    ms_resid = np.maximum(ss_total - ss_seed - ss_query, 0.0) / df_resid
    cells = s * m
    seed_var = ms_seed / cells  # = var(D_s)/S
    shared = np.maximum(ms_query - ms_resid, 0.0) / cells  # σ_v²/M, truncated at 0
    crossed_var = seed_var + shared
    # Satterthwaite: Var(Σ c_i MS_i) ≈ Σ 2 c_i² MS_i² / df_i; the query terms only when used.
    spread = ms_seed**2 / (s - 1) + np.where(
        shared > 0, ms_query**2 / (m - 1) + ms_resid**2 / df_resid, 0.0
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        crossed_df = np.where(spread > 0, (crossed_var * cells) ** 2 / spread, float(s - 1))
    # The residual enters with a minus sign, so Satterthwaite's df can fall below every term's
    # (to ~0 when MS_query ≈ MS_resid, i.e. when the shared part is barely there); a sum that
    # always contains MS_seed has at least its S − 1 degrees of freedom.
    crossed_df = np.maximum(crossed_df, float(s - 1))
    return Analyses(
        difference=grand,
        seed_se=np.sqrt(seed_var),
        seed_df=np.full(grand.shape, float(s - 1)),
        crossed_se=np.sqrt(crossed_var),
        crossed_df=crossed_df,
        num_seeds=s,
        num_queries=m,
    )


def _two_sided_p(diff: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """p of H0: no difference; a zero SE gives p = 1 for a zero difference, 0 otherwise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(diff) / se, np.where(diff == 0, 0.0, np.inf))
    return 2.0 * stats.t.sf(t, df)


def _larger(a: Analyses, quantity) -> np.ndarray:
    """``quantity(se, df)`` of the crossed analysis, or the larger of both with several seeds."""
    crossed = quantity(a.crossed_se, a.crossed_df)
    if a.num_seeds == 1:
        return crossed
    return np.maximum(quantity(a.seed_se, a.seed_df), crossed)


def half_width(a: Analyses, confidence: float) -> np.ndarray:
    """Half-width of the reported interval: the wider of the per-seed and crossed ones."""
    q = 0.5 + confidence / 2.0
    return _larger(a, lambda se, df: stats.t.ppf(q, df) * se)


def p_value(a: Analyses) -> np.ndarray:
    """Two-sided p of the marker's test: the larger of the per-seed and crossed tests' p."""
    return _larger(a, lambda se, df: _two_sided_p(a.difference, se, df))


def minimum_detectable_effect(a: Analyses, alpha: float, power: float) -> np.ndarray:
    """(t_{1−α/2,ν} + t_{power,ν})·SE, the larger over the two analyses (Bloom 1995)."""
    return _larger(a, lambda se, df: (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


@dataclass(frozen=True)
class DifferenceInterval:
    """One paired ΔR@1 (fractions) with what the table shows and marks."""

    difference: float
    low: float
    high: float
    p_value: float  # two-sided, unadjusted; the larger of the two analyses
    confidence: float
    num_seeds: int
    num_queries: int
    per_seed: tuple[float, ...]  # each seed's difference D_s
    analyses: Analyses = field(repr=False, compare=False)  # for the MDE at the family's level

    @property
    def covers(self) -> str:
        """What randomness the interval accounts for."""
        return "seeds and queries" if self.num_seeds > 1 else "queries only"

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def difference_interval(
    hits: np.ndarray, baseline_hits: np.ndarray, confidence: float = 0.95
) -> DifferenceInterval:
    """The interval of mean(hits − baseline_hits) over seeds × queries (see the module doc).

    Args:
        hits: [S, M] 0/1 Found@N of the model, one row per seed.
        baseline_hits: the baseline's, same shape; row s is the baseline trained with seed s.
        confidence: e.g. 0.95 for a 95 % interval.
    """
    if not 0.0 < confidence < 1.0:
        raise InputError(f"difference_interval: confidence={confidence}; expected 0 < c < 1")
    d = paired_differences(hits, baseline_hits, "difference_interval")
    a = analyse(d)
    half = float(half_width(a, confidence))
    diff = float(a.difference)
    return DifferenceInterval(
        difference=diff,
        low=diff - half,
        high=diff + half,
        p_value=float(p_value(a)),
        confidence=confidence,
        num_seeds=a.num_seeds,
        num_queries=a.num_queries,
        per_seed=tuple(float(x) for x in d.mean(axis=1)),
        analyses=a,
    )


def mean_interval(hits: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The interval of one row's mean Found@N [S, M] over seeds × queries (same analyses)."""
    h = np.atleast_2d(np.asarray(hits, dtype=np.float64))
    a = analyse(h)
    half = float(half_width(a, confidence))
    return float(a.difference) - half, float(a.difference) + half
