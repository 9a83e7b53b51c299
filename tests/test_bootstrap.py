"""The two-level (seeds × queries) paired bootstrap of ΔR@1.

Checked against a direct per-resample loop (same random stream: identical resamples), against
the same loop statistically (default chunking draws the stream in another order), and by its
coverage of a known effect on simulated data where seed-to-seed variance is real — the case in
which the query-only interval is too narrow.
"""

from __future__ import annotations

import numpy as np
import pytest

from icsa.errors import InputError
from icsa.tables.stats import paired_bootstrap, seed_query_bootstrap


def _reference(a: np.ndarray, b: np.ndarray, samples: int, confidence: float, seed: int):
    """The definition, one resample at a time: seeds with replacement, then queries."""
    d = a.astype(float) - b.astype(float)
    s, m = d.shape
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(samples):
        seeds = rng.integers(0, s, size=s)
        queries = rng.integers(0, m, size=m)
        total = 0.0
        for i in seeds:
            for j in queries:
                total += d[i, j]
        means.append(total / (s * m))
    alpha = (1 - confidence) / 2
    return np.quantile(means, [alpha, 1 - alpha]), d.mean()


def _hits(rng: np.random.Generator, s: int, m: int, p: float) -> np.ndarray:
    return (rng.random((s, m)) < p).astype(np.int8)


def test_matches_direct_loop_on_the_same_stream() -> None:
    rng = np.random.default_rng(1)
    a, b = _hits(rng, 3, 40, 0.6), _hits(rng, 3, 40, 0.45)
    (low, high), diff = _reference(a, b, samples=300, confidence=0.9, seed=11)
    ci = seed_query_bootstrap(a, b, samples=300, confidence=0.9, seed=11, chunk=1)
    assert ci.difference == pytest.approx(diff)
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)
    assert ci.num_seeds == 3 and ci.num_queries == 40 and ci.resampled == "seeds and queries"


def test_default_chunking_agrees_with_the_loop_statistically() -> None:
    rng = np.random.default_rng(2)
    a, b = _hits(rng, 4, 60, 0.55), _hits(rng, 4, 60, 0.5)
    a[0] = 1  # one seed far better than the others: the seed level matters
    (low, high), _ = _reference(a, b, samples=2000, confidence=0.95, seed=0)
    ci = seed_query_bootstrap(a, b, samples=4000, confidence=0.95, seed=5)
    assert ci.low == pytest.approx(low, abs=0.02) and ci.high == pytest.approx(high, abs=0.02)


def test_one_seed_is_the_query_bootstrap_and_many_seeds_are_wider() -> None:
    rng = np.random.default_rng(3)
    a, b = _hits(rng, 1, 300, 0.6), _hits(rng, 1, 300, 0.5)
    one = seed_query_bootstrap(a, b, samples=3000, seed=0)
    queries = paired_bootstrap(a, b, samples=3000, seed=0)
    assert one.resampled == "queries"
    assert (one.high - one.low) == pytest.approx(queries.high - queries.low, rel=0.1)
    # Seeds that disagree (+10 points, 0, −10 points): seed resampling must widen the interval.
    base = _hits(rng, 3, 300, 0.5)
    model = base.copy()
    model[0, :30] = 1  # seed 0 finds up to 30 more queries, seed 2 loses some
    model[2, :60] = 0
    two = seed_query_bootstrap(model, base, samples=3000, seed=0)
    flat = paired_bootstrap(model, base, samples=3000, seed=0)
    assert two.difference == pytest.approx(flat.difference)
    assert (two.high - two.low) > 1.5 * (flat.high - flat.low)


def _simulate(rng: np.random.Generator, s: int, m: int, effect: float, seed_sd: float):
    """Hits of a model and its baseline with a known mean effect and real seed variance."""
    p = rng.uniform(0.3, 0.7, size=m)  # query difficulty (a new evaluation set each time)
    shift = rng.normal(0.0, seed_sd, size=(s, 1))  # each seed's training luck, model only
    a = rng.random((s, m)) < np.clip(p + effect + shift, 0, 1)
    b = rng.random((s, m)) < p
    return a.astype(np.int8), b.astype(np.int8)


def test_coverage_of_a_known_effect() -> None:
    rng = np.random.default_rng(4)
    effect, reps, covered, covered_flat = 0.05, 200, 0, 0
    estimates, widths = [], []
    for rep in range(reps):
        a, b = _simulate(rng, s=10, m=300, effect=effect, seed_sd=0.04)
        ci = seed_query_bootstrap(a, b, samples=600, confidence=0.95, seed=rep)
        flat = paired_bootstrap(a, b, samples=600, confidence=0.95, seed=rep)
        covered += ci.low <= effect <= ci.high
        covered_flat += flat.low <= effect <= flat.high
        estimates.append(ci.difference)
        widths.append(ci.high - ci.low)
    # At least nominal coverage; the query-only interval misses the seed variance and falls short.
    assert covered / reps >= 0.92
    assert covered_flat / reps < 0.9
    # Resampling both crossed factors counts the per-cell noise more than once (Owen 2007), so
    # the interval is conservative, but not wildly: its width stays within 1.6× of the width a
    # normal interval with the estimator's true spread over replications would have.
    true_width = 2 * 1.96 * float(np.std(estimates))
    assert 1.0 <= float(np.mean(widths)) / true_width <= 1.6


def test_excludes_zero_and_errors() -> None:
    rng = np.random.default_rng(5)
    base = _hits(rng, 3, 500, 0.3)
    better = np.maximum(base, _hits(rng, 3, 500, 0.3))
    assert seed_query_bootstrap(better, base, samples=500).excludes_zero
    assert not seed_query_bootstrap(base, base.copy(), samples=500).excludes_zero
    assert seed_query_bootstrap(base, better, samples=500).excludes_zero  # worse is marked too
    with pytest.raises(InputError, match="same \\[seeds, queries\\] shape"):
        seed_query_bootstrap(base, base[:2])
    with pytest.raises(InputError, match="confidence"):
        seed_query_bootstrap(base, base, confidence=1.5)
