"""Coverage and false-star rate of ΔR@1 intervals at the seed and query counts we run.

    python benchmarks/interval_coverage.py [--reps 2000] [--boot-reps 300] [--out FILE.md]

Every method sees the same simulated cells (tests/helpers/interval_world.py: a known true
effect, seed variance from negligible to dominant; "measured" is the regime of a fresh-clone
Table 5). Methods:

- **ours** — the tables' interval (icsa/tables/inference.py): the wider of the per-seed t and
  the crossed seeds × queries interval;
- **per-seed t** — paired Student t over the S per-seed differences (S − 1 df) alone;
- **crossed** — the crossed random-effects interval (Satterthwaite df) alone;
- **queries only** — the paired t over queries of the seed-averaged differences;
- **2-level bootstrap** — the percentile bootstrap the tables used before (seeds with
  replacement, then queries; Owen 2007), on fewer replications (``--boot-reps``, 1000 resamples
  each) because it resamples.

Columns: coverage of the true effect by a 95 % interval, and the share of zero-effect cells
whose interval excludes 0 (a false star without multiplicity adjustment). Monte-Carlo standard
error: about 0.5 points at 2000 replications, 1.3 points at 300.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icsa.tables.inference import analyse, half_width  # noqa: E402
from tests.helpers.interval_world import SEED_REGIMES, simulate_differences  # noqa: E402

SEEDS = (1, 2, 3, 5, 10)
QUERIES = (100, 700)


def two_level_bootstrap(d: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """[R, 2] percentile interval of the old two-level (seeds, then queries) bootstrap."""
    reps, s, m = d.shape
    out = np.empty((reps, 2))
    for r in range(reps):
        seed_idx = rng.integers(0, s, size=(samples, s))
        query_idx = rng.integers(0, m, size=(samples, m))
        per_seed = d[r][:, query_idx].mean(axis=2)  # [S, samples]
        means = per_seed[seed_idx, np.arange(samples)[:, None]].mean(axis=1)
        out[r] = np.quantile(means, [0.025, 0.975])
    return out


def rates(d: np.ndarray, effect: float) -> dict[str, tuple[float, float]]:
    """{method: (coverage, share of intervals excluding 0)} for cells ``d`` [R, S, M]."""
    a = analyse(d)
    s = d.shape[1]
    halves = {"ours": half_width(a, 0.95)}
    if s > 1:
        halves["per-seed t"] = stats.t.ppf(0.975, a.seed_df) * a.seed_se
        halves["crossed"] = stats.t.ppf(0.975, a.crossed_df) * a.crossed_se
    flat = analyse(d.mean(axis=1, keepdims=True))
    halves["queries only"] = stats.t.ppf(0.975, flat.crossed_df) * flat.crossed_se
    out = {}
    for name, half in halves.items():
        err = np.abs(a.difference - effect)
        out[name] = (float(np.mean(err <= half)), float(np.mean(np.abs(a.difference) > half)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--boot-reps", type=int, default=300)
    default_out = ROOT / "benchmarks" / "results" / "interval_coverage.md"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    methods = ["ours", "per-seed t", "crossed", "queries only", "2-level bootstrap"]
    lines = [
        "# ΔR@1 intervals: coverage and false stars by seed count",
        "",
        f"`python benchmarks/interval_coverage.py --reps {args.reps} --boot-reps "
        f"{args.boot_reps}`. Each cell: coverage of the true effect by a 95 % interval / share "
        "of zero-effect intervals that exclude 0 (unadjusted false stars), in %. Seed regimes "
        f"(seed sd of the difference, fraction): {SEED_REGIMES}. The bootstrap column uses "
        f"{args.boot_reps} replications (1000 resamples each) at 3 and 10 seeds only.",
        "",
        "| seeds | queries | seed regime | " + " | ".join(methods) + " |",
        "|" + "---|" * (3 + len(methods)),
    ]
    rng = np.random.default_rng(2026)
    for m in QUERIES:
        for s in SEEDS:
            for regime, sd in SEED_REGIMES.items():
                d = simulate_differences(rng, args.reps, s, m, 0.0, sd)
                result = rates(d, 0.0)
                if s in (3, 10) and m == 700:
                    boot = two_level_bootstrap(d[: args.boot_reps], 1000, rng)
                    covered = (boot[:, 0] <= 0) & (boot[:, 1] >= 0)
                    result["2-level bootstrap"] = (float(covered.mean()), 1 - float(covered.mean()))
                cells = [
                    f"{100 * result[k][0]:.1f} / {100 * result[k][1]:.1f}" if k in result else "–"
                    for k in methods
                ]
                lines.append(f"| {s} | {m} | {regime} | " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
    lines += [
        "",
        "Reading: with one seed only the query-only interval exists; it covers only when seed "
        "variance is negligible, which is why the tables mark nothing with one seed. With 2+ "
        "seeds the per-seed t is exact for normal per-seed differences and the crossed interval "
        "adds the query component all seeds share; the tables take the wider of the two. The "
        "two-level bootstrap under-covers at 3 seeds once seed variance matters (and "
        "over-covers, wasting power, when it does not). A single cell 1.5 points from 95 % is "
        "within 3 Monte-Carlo standard errors at this replication count.",
        "",
        f"Wall time {time.perf_counter() - start:.0f} s.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
