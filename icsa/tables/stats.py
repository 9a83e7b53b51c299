"""Statistics for the tables: mean ± std over seeds and paired bootstraps (seeds × queries).

A "with module" row is compared with its baseline row (same backbone, lowest trained block and
seed, evaluated on the same queries). Per query, Found@1 of the two models is paired, so the
interval of the Recall@1 difference only has to reflect which queries happened to be sampled:
resampling queries with replacement and recomputing the mean difference gives a percentile
interval (Efron & Tibshirani, ch. 13).

With several seeds, each seed's model is paired with the baseline of the *same* seed, giving a
[seeds × queries] matrix of differences d_sq = a_sq − b_sq. Seeds and queries are two crossed
sources of randomness: another training run draws another seed, another evaluation set draws
other queries. ``seed_query_bootstrap`` resamples both (a two-level paired bootstrap: S seeds
with replacement, then M queries with replacement, the statistic being the mean of d over the
drawn seeds × drawn queries; Owen 2007, "the pigeonhole bootstrap"), so its interval covers
training randomness as well as query sampling; it is somewhat conservative, because the
per-cell noise enters through both resampled factors (measured: about 1.4× the width of an exact
interval when per-query noise dominates; tests/test_bootstrap.py). ``paired_bootstrap`` averages
over seeds first and resamples queries only: its interval ignores seed variance (kept as a
second column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class BootstrapInterval:
    """Paired difference (model − baseline) with its percentile interval, as fractions."""

    difference: float
    low: float
    high: float
    confidence: float
    samples: int
    num_queries: int
    num_seeds: int
    resampled: str = "queries"  # what the interval covers: "queries" or "seeds and queries"

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (the difference is marked)."""
        return self.low > 0.0 or self.high < 0.0


def _paired_differences(
    hits: np.ndarray, baseline_hits: np.ndarray, samples: int, confidence: float, name: str
) -> np.ndarray:
    """Checked [S, M] matrix of per-seed, per-query differences (model − baseline)."""
    a = np.atleast_2d(np.asarray(hits, dtype=np.float64))
    b = np.atleast_2d(np.asarray(baseline_hits, dtype=np.float64))
    if a.shape != b.shape or a.shape[1] == 0 or a.ndim != 2:
        raise InputError(
            f"{name}: model hits {a.shape} vs baseline hits {b.shape}; expected the "
            "same [seeds, queries] shape (same evaluation set and seeds)"
        )
    if not 0.0 < confidence < 1.0 or samples < 1:
        raise InputError(
            f"{name}: confidence={confidence}, samples={samples}; expected "
            "0 < confidence < 1 and samples >= 1"
        )
    return a - b


def _interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def seed_query_bootstrap(
    hits: np.ndarray,
    baseline_hits: np.ndarray,
    samples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 256,
) -> BootstrapInterval:
    """Two-level paired percentile bootstrap of mean(hits − baseline_hits) over seeds × queries.

    Each resample draws S seed indices with replacement, then M query indices with replacement
    (the same queries for every drawn seed: every model is evaluated on the same queries), and
    takes the mean difference over the drawn cells. With one seed it is ``paired_bootstrap``'s
    query resampling.

    Args:
        hits: [S, M] 0/1 Found@N of the model, one row per seed.
        baseline_hits: the baseline's, same shape; row s is the baseline trained with seed s.
        samples, confidence, seed: as for ``paired_bootstrap``.
        chunk: resamples drawn at once. Random numbers are drawn per chunk (seed indices, then
            query indices), so ``chunk=1`` consumes the stream exactly as a per-resample loop.
    """
    d = _paired_differences(hits, baseline_hits, samples, confidence, "seed_query_bootstrap")
    s, m = d.shape
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, chunk):
        n = min(start + chunk, samples) - start
        seed_idx = rng.integers(0, s, size=(n, s))  # [n, S] resampled seeds
        query_idx = rng.integers(0, m, size=(n, m))  # [n, M] resampled queries
        per_seed = d[:, query_idx].mean(axis=2)  # [S, n]: each seed's mean over drawn queries
        means[start : start + n] = per_seed[seed_idx, np.arange(n)[:, None]].mean(axis=1)
    low, high = _interval(means, confidence)
    return BootstrapInterval(
        difference=float(d.mean()),
        low=low,
        high=high,
        confidence=confidence,
        samples=samples,
        num_queries=m,
        num_seeds=s,
        resampled="seeds and queries" if s > 1 else "queries",
    )


def paired_bootstrap(
    hits: np.ndarray,
    baseline_hits: np.ndarray,
    samples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 256,
) -> BootstrapInterval:
    """Percentile bootstrap interval of mean(hits − baseline_hits) over queries.

    Args:
        hits: [S, M] (or [M]) 0/1 Found@N of the model, one row per seed.
        baseline_hits: the baseline's, same shape, same seeds and queries in the same order.
        samples: bootstrap resamples of the M queries (with replacement).
        confidence: e.g. 0.95 for a 95% interval.
        seed: seeds the resampling, so a table is reproducible.
        chunk: resamples drawn at once (bounds memory at chunk × M indices).
    """
    d = _paired_differences(hits, baseline_hits, samples, confidence, "paired_bootstrap")
    # Pair per seed, then pool: one seed-averaged difference per query.
    per_query = d.mean(axis=0)  # [M]
    m = per_query.size
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, chunk):
        stop = min(start + chunk, samples)
        idx = rng.integers(0, m, size=(stop - start, m))  # [chunk, M] resampled queries
        means[start:stop] = per_query[idx].mean(axis=1)
    low, high = _interval(means, confidence)
    return BootstrapInterval(
        difference=float(per_query.mean()),
        low=low,
        high=high,
        confidence=confidence,
        samples=samples,
        num_queries=m,
        num_seeds=d.shape[0],
    )


def hits_at(first_hit_rank: np.ndarray, n: int) -> np.ndarray:
    """Found@N per query from the per-query rank of the first correct image (−1: none in top-k)."""
    ranks = np.asarray(first_hit_rank)
    return (ranks >= 0) & (ranks < n)
