"""The ΔR@1 columns of a run table and the names it gives the data.

Intervals: vs the baseline attention and vs block none, each the two-level (seeds × queries)
interval with the query-only one beside it, recomputed here from the per-query files; a
difference whose interval excludes 0 is marked. Labels: the synthetic city is named as such,
and the paper's columns say they are the paper's, on real Pitts30k.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icsa.tables.compose import Statistics, build_run_table, load_paper
from icsa.tables.render import run_table_markdown, write_outputs
from icsa.tables.stats import paired_bootstrap, seed_query_bootstrap
from tests.helpers.tables import PAPER, table5_spec, write_run

SEEDS = [0, 1, 2]
STATS = Statistics(bootstrap_samples=400, confidence=0.95, seed=3)
LABEL = "synthetic Pitts30k-role city, test"


def _ranks(rng: np.random.Generator, p_found: float, m: int) -> np.ndarray:
    return np.where(rng.random(m) < p_found, 0, np.where(rng.random(m) < 0.5, -1, 7))


def _world(tmp_path: Path, m: int = 300) -> tuple[dict, dict[str, np.ndarray]]:
    """Block none finds 30 %, block 5 about 60 %: a real training effect; ICSA ≈ none."""
    spec = {**table5_spec(SEEDS), "evalset_label": LABEL, "block_baseline": "none"}
    rng = np.random.default_rng(0)
    ranks = {}
    for row in spec["rows"]:
        for run in row["runs"]:
            ranks[run] = _ranks(rng, 0.3 if row["block"] == "none" else 0.6, m)
            write_run(tmp_path, run, spec["evalset"], ranks[run])
    return spec, ranks


def _found(ranks: dict[str, np.ndarray], runs: list[str]) -> np.ndarray:
    return np.stack([ranks[r] == 0 for r in runs])


def test_intervals_are_seed_level_and_recomputable(tmp_path: Path) -> None:
    spec, ranks = _world(tmp_path)
    df = build_run_table(spec, tmp_path, load_paper(PAPER), STATS).set_index(["attention", "block"])
    runs = {(r["attention"], r["block"]): r["runs"] for r in spec["rows"]}
    boot = (STATS.bootstrap_samples, STATS.confidence, STATS.seed)
    # vs the baseline attention, same block
    a, b = _found(ranks, runs[("icsa", "5")]), _found(ranks, runs[("none", "5")])
    two, flat = seed_query_bootstrap(a, b, *boot), paired_bootstrap(a, b, *boot)
    row = df.loc[("icsa", "block5")]
    assert row["dR@1"] == pytest.approx(100 * (a.mean() - b.mean()))
    assert (row["dR@1_low"], row["dR@1_high"]) == pytest.approx((100 * two.low, 100 * two.high))
    assert (row["dR@1_qlow"], row["dR@1_qhigh"]) == pytest.approx((100 * flat.low, 100 * flat.high))
    assert bool(row["dR@1_marked"]) == two.excludes_zero
    # vs block none, same attention: training the backbone helped, and the table says so
    t, u = _found(ranks, runs[("none", "5")]), _found(ranks, runs[("none", "none")])
    two = seed_query_bootstrap(t, u, *boot)
    row = df.loc[("none", "block5")]
    assert row["block_baseline"] == "none"
    assert row["dR@1_block"] == pytest.approx(100 * (t.mean() - u.mean()))
    assert (row["dR@1_block_low"], row["dR@1_block_high"]) == pytest.approx(
        (100 * two.low, 100 * two.high)
    )
    assert row["dR@1_block_low"] > 0 and bool(row["dR@1_block_marked"])
    # The block-none rows are their own block baseline.
    assert math.isnan(df.loc[("icsa", "none")]["dR@1_block"])
    assert not df.loc[("icsa", "none")]["dR@1_block_marked"]


def test_seed_disagreement_widens_the_interval_and_unmarks(tmp_path: Path) -> None:
    """Seeds that disagree: the query-only interval excludes 0, the two-level one must not."""
    spec, ranks = _world(tmp_path, m=1000)
    rng = np.random.default_rng(9)
    # Half the queries redrawn: seed 0 gains ~17 points, seeds 1 and 2 lose ~2; mean ≈ +4.
    for seed, p in zip(SEEDS, (0.95, 0.56, 0.56)):
        run = f"pitts30k-vgg16-icsa-b5-s{seed}"
        base = ranks[f"pitts30k-vgg16-none-b5-s{seed}"]
        ranks[run] = np.where(rng.random(base.size) < 0.5, base, _ranks(rng, p, base.size))
        write_run(tmp_path, run, spec["evalset"], ranks[run])
    df = build_run_table(spec, tmp_path, load_paper(PAPER), STATS).set_index(["attention", "block"])
    row = df.loc[("icsa", "block5")]
    assert row["dR@1_qlow"] > 0  # queries alone would call it real
    assert row["dR@1_low"] <= 0 < row["dR@1_high"] and not row["dR@1_marked"]
    assert row["dR@1_high"] - row["dR@1_low"] > 1.5 * (row["dR@1_qhigh"] - row["dR@1_qlow"])


def test_markdown_marks_labels_and_notes(tmp_path: Path) -> None:
    spec, _ = _world(tmp_path)
    df = build_run_table(spec, tmp_path, load_paper(PAPER), STATS)
    md = run_table_markdown(df, spec, STATS)
    header = md.splitlines()[2]
    assert "R@1 paper (real Pitts30k-test)" in header
    assert "ΔR@1 vs baseline [95% CI]" in header and "ΔR@1 vs block none [95% CI]" in header
    block5 = next(line for line in md.splitlines() if line.startswith("| VGG16 | block5 |"))
    rec = df[(df["attention"] == "none") & (df["block"] == "block5")].iloc[0]
    cell = (
        f"{rec['dR@1_block']:+.1f} [{rec['dR@1_block_low']:+.1f}, {rec['dR@1_block_high']:+.1f}]*"
    )
    assert cell in block5
    assert f"Evaluation set (ours): {LABEL}" in md
    assert "draws the 3 seeds with replacement, then the queries with replacement" in md
    assert "not on our synthetic Pitts30k-role city, test" in md
    assert "pitts30k-test |" not in md  # the synthetic set never appears as if it were Pitts30k


def test_csv_carries_labels(tmp_path: Path) -> None:
    spec, _ = _world(tmp_path / "metrics")
    built = build_run_table(spec, tmp_path / "metrics", load_paper(PAPER), STATS)
    out = tmp_path / "out"
    write_outputs(built, run_table_markdown(built, spec, STATS), out / "t5.csv", out / "t5.md")
    df = pd.read_csv(out / "t5.csv")
    assert set(df["evalset_label"]) == {LABEL} and set(df["paper_evalset"]) == {
        "real Pitts30k-test"
    }
    assert {"dR@1_qlow", "dR@1_marked", "dR@1_block", "dR@1_block_high"} <= set(df.columns)
