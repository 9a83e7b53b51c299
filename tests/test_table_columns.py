"""The ΔR@1 columns of a run table and the names it gives the data.

Intervals: vs the baseline attention and vs block none, each the interval valid at the seed
count run (icsa/tables/inference.py) with the query-only one beside it, recomputed here from the
per-query files; marks decided over the table's family (Holm by default); the MDE; each seed's
values. Labels: the synthetic city is named as such, and the paper's columns say they are the
paper's, on real Pitts30k.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from icsa.tables.compose import Statistics, build_run_table, load_paper
from icsa.tables.inference import analyse, difference_interval, minimum_detectable_effect
from icsa.tables.multiplicity import adjust
from icsa.tables.render import run_table_markdown, write_outputs
from tests.helpers.tables import PAPER, table5_spec, write_run

SEEDS = [0, 1, 2]
STATS = Statistics(confidence=0.95, multiplicity="holm", power=0.8)
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


def _table(spec: dict, metrics: Path, stats: Statistics = STATS) -> pd.DataFrame:
    return build_run_table(spec, metrics, load_paper(PAPER), stats).set_index(
        ["attention", "block"]
    )


def test_intervals_are_seed_level_and_recomputable(tmp_path: Path) -> None:
    spec, ranks = _world(tmp_path)
    df = _table(spec, tmp_path)
    runs = {(r["attention"], r["block"]): r["runs"] for r in spec["rows"]}
    # vs the baseline attention, same block
    a, b = _found(ranks, runs[("icsa", "5")]), _found(ranks, runs[("none", "5")])
    ci = difference_interval(a, b, 0.95)
    flat = difference_interval(a.mean(axis=0, keepdims=True), b.mean(axis=0, keepdims=True))
    row = df.loc[("icsa", "block5")]
    assert row["dR@1"] == pytest.approx(100 * (a.mean() - b.mean()))
    assert (row["dR@1_low"], row["dR@1_high"]) == pytest.approx((100 * ci.low, 100 * ci.high))
    assert (row["dR@1_qlow"], row["dR@1_qhigh"]) == pytest.approx((100 * flat.low, 100 * flat.high))
    assert row["dR@1_p"] == pytest.approx(ci.p_value)
    per_seed = [100 * (a[s].mean() - b[s].mean()) for s in range(3)]
    assert row["dR@1_seeds"] == "/".join(f"{v:.1f}" for v in per_seed)
    # The reported interval contains the paired t-interval over the three per-seed differences.
    half = scipy_stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / math.sqrt(3)
    assert row["dR@1_low"] <= np.mean(per_seed) - half + 1e-9
    assert row["dR@1_high"] >= np.mean(per_seed) + half - 1e-9
    # vs block none, same attention: training the backbone helped, and the table says so
    t, u = _found(ranks, runs[("none", "5")]), _found(ranks, runs[("none", "none")])
    ci = difference_interval(t, u, 0.95)
    row = df.loc[("none", "block5")]
    assert row["block_baseline"] == "none"
    assert row["dR@1_block"] == pytest.approx(100 * (t.mean() - u.mean()))
    assert (row["dR@1_block_low"], row["dR@1_block_high"]) == pytest.approx(
        (100 * ci.low, 100 * ci.high)
    )
    assert row["dR@1_block_low"] > 0 and bool(row["dR@1_block_marked"])
    # MDE at Holm's strictest level over the table's 4 comparisons, 80 % power (Bloom 1995).
    level = 0.05 / 4
    mde = minimum_detectable_effect(analyse(t.astype(float) - u), level, 0.8)
    assert row["dR@1_block_mde"] == pytest.approx(100 * float(mde))
    seed_t = (
        (scipy_stats.t.ppf(1 - level / 2, 2) + scipy_stats.t.ppf(0.8, 2))
        * np.std([t[s].mean() - u[s].mean() for s in range(3)], ddof=1)
        / math.sqrt(3)
    )
    assert row["dR@1_block_mde"] >= 100 * seed_t - 1e-9
    # The block-none rows are their own block baseline.
    assert math.isnan(df.loc[("icsa", "none")]["dR@1_block"])
    assert not df.loc[("icsa", "none")]["dR@1_block_marked"]
    # Each seed's Recall@1 and the interval of the row's mean.
    row = df.loc[("icsa", "block5")]
    assert row["R@1_seeds"] == "/".join(f"{100 * a[s].mean():.1f}" for s in range(3))
    assert row["R@1_low"] < row["R@1"] < row["R@1_high"]


def test_the_fresh_clone_false_star_is_gone(tmp_path: Path) -> None:
    """Issue 26's case: per-seed R@1 51.0/58.9/47.4 vs 49.3/50.1/44.4 on 700 queries (per-seed
    differences −1.7, −8.8, −3.0). The paired t-interval over seeds is about [−13.9, +4.9]:
    nothing may be marked, although every seed's difference is negative."""
    spec = {**table5_spec(SEEDS), "evalset_label": LABEL}
    m = 700
    found = {"none": (357, 412, 332), "icsa": (345, 351, 311)}
    rng = np.random.default_rng(1)
    for row in spec["rows"]:
        for seed, run in zip(SEEDS, row["runs"]):
            order = np.random.default_rng(seed).permutation(m)  # same query order per seed
            k = found[row["attention"]][seed] + (0 if row["block"] == "5" else -100)
            ranks = np.where(np.isin(np.arange(m), order[:k]), 0, rng.integers(1, 9, m))
            write_run(tmp_path, run, spec["evalset"], ranks)
    row = _table(spec, tmp_path).loc[("icsa", "block5")]
    assert row["dR@1_seeds"] == "-1.7/-8.7/-3.0"
    assert row["dR@1"] == pytest.approx(-4.48, abs=0.01)
    assert row["dR@1_low"] < -13 and row["dR@1_high"] > 4  # contains [−13.9, +4.9]
    assert not row["dR@1_marked"] and row["dR@1_p"] > 0.05
    assert row["dR@1_qhigh"] < 0  # queries alone would have called it a harm
    assert row["dR@1_mde"] > abs(row["dR@1"])  # 3 seeds cannot resolve a 4.5-point effect here


def test_seed_disagreement_widens_the_interval_and_unmarks(tmp_path: Path) -> None:
    """Seeds that disagree: the query-only interval excludes 0, the seed-level one must not."""
    spec, ranks = _world(tmp_path, m=1000)
    rng = np.random.default_rng(9)
    # Half the queries redrawn: seed 0 gains ~17 points, seeds 1 and 2 lose ~2; mean ≈ +4.
    for seed, p in zip(SEEDS, (0.95, 0.56, 0.56)):
        run = f"pitts30k-vgg16-icsa-b5-s{seed}"
        base = ranks[f"pitts30k-vgg16-none-b5-s{seed}"]
        ranks[run] = np.where(rng.random(base.size) < 0.5, base, _ranks(rng, p, base.size))
        write_run(tmp_path, run, spec["evalset"], ranks[run])
    row = _table(spec, tmp_path).loc[("icsa", "block5")]
    assert row["dR@1_qlow"] > 0  # queries alone would call it real
    assert row["dR@1_low"] <= 0 < row["dR@1_high"] and not row["dR@1_marked"]
    assert row["dR@1_high"] - row["dR@1_low"] > 1.5 * (row["dR@1_qhigh"] - row["dR@1_qlow"])


def test_marks_are_adjusted_over_the_whole_table(tmp_path: Path) -> None:
    spec, _ = _world(tmp_path)
    family = []
    for method in ("holm", "bh", "none"):
        df = build_run_table(spec, tmp_path, load_paper(PAPER), Statistics(multiplicity=method))
        p = np.concatenate([df[f"{c}_p"].dropna().to_numpy() for c in ("dR@1", "dR@1_block")])
        padj = np.concatenate([df[f"{c}_padj"].dropna().to_numpy() for c in ("dR@1", "dR@1_block")])
        marked = np.concatenate(
            [df.loc[df[f"{c}_p"].notna(), f"{c}_marked"].to_numpy() for c in ("dR@1", "dR@1_block")]
        )
        assert p.size == 4  # 2 vs baseline + 2 vs block none
        assert padj == pytest.approx(adjust(p, method))
        assert (marked == (padj < 0.05)).all()
        family.append(marked.sum())
    assert family[0] <= family[1] <= family[2]  # Holm is the strictest, no adjustment the least


def test_markdown_marks_labels_and_notes(tmp_path: Path) -> None:
    spec, _ = _world(tmp_path)
    df = build_run_table(spec, tmp_path, load_paper(PAPER), STATS)
    md = run_table_markdown(df, spec, STATS)
    header = md.splitlines()[2]
    assert "R@1 paper (real Pitts30k-test)" in header
    assert "ΔR@1 vs baseline [95% CI]" in header and "ΔR@1 vs block none [95% CI]" in header
    assert header.count("| MDE |") + header.endswith("| MDE |") >= 1
    block5 = next(line for line in md.splitlines() if line.startswith("| VGG16 | block5 |"))
    rec = df[(df["attention"] == "none") & (df["block"] == "block5")].iloc[0]
    cell = (
        f"{rec['dR@1_block']:+.1f} [{rec['dR@1_block_low']:+.1f}, {rec['dR@1_block_high']:+.1f}]*"
    )
    assert cell in block5 and f"±{rec['dR@1_block_mde']:.1f}" in block5
    assert f"Evaluation set (ours): {LABEL}" in md
    assert "valid with 3 seeds" in md and "4 comparisons in this table" in md
    assert "Holm" in md and "no effect larger than the MDE" in md
    assert "another CPU gives other per-seed values" in md
    assert "not on our synthetic Pitts30k-role city, test" in md
    assert "pitts30k-test |" not in md  # the synthetic set never appears as if it were Pitts30k


def test_one_seed_marks_nothing(tmp_path: Path) -> None:
    spec = {**table5_spec([0]), "evalset_label": LABEL, "block_baseline": "none"}
    rng = np.random.default_rng(3)
    for row in spec["rows"]:
        write_run(tmp_path, row["runs"][0], spec["evalset"],
                  _ranks(rng, 0.1 if row["block"] == "none" else 0.9, 500))  # fmt: skip
    df = build_run_table(spec, tmp_path, load_paper(PAPER), STATS)
    assert (df["dR@1_block_qlow"].dropna() > 0).all()  # a huge difference on these queries …
    assert not df["dR@1_block_marked"].any() and not df["dR@1_marked"].any()  # … not marked
    assert df["dR@1_block_mde"].isna().all()
    assert "cannot cover training randomness" in run_table_markdown(df, spec, STATS)


def test_csv_and_json_carry_labels_and_seeds(tmp_path: Path) -> None:
    spec, _ = _world(tmp_path / "metrics")
    built = build_run_table(spec, tmp_path / "metrics", load_paper(PAPER), STATS)
    out = tmp_path / "out"
    write_outputs(built, run_table_markdown(built, spec, STATS), out / "t5.csv", out / "t5.md",
                  out / "t5.json")  # fmt: skip
    df = pd.read_csv(out / "t5.csv")
    assert set(df["evalset_label"]) == {LABEL} and set(df["paper_evalset"]) == {
        "real Pitts30k-test"
    }
    assert {"dR@1_qlow", "dR@1_marked", "dR@1_block", "dR@1_block_high", "dR@1_mde",
            "R@1_seeds", "dR@1_padj"} <= set(df.columns)  # fmt: skip
    summary = json.loads((out / "t5.json").read_text())["VGG16+ICSA block5"]
    seeds = [summary[f"R@1_s{s}"] for s in SEEDS]
    assert np.mean(seeds) == pytest.approx(built.iloc[3]["R@1"], abs=0.06)
    assert {"dR@1_s0", "dR@1_block_s2", "dR@1_mde"} <= set(summary)


@pytest.mark.parametrize("method", ["holm", "bh", "none"])
def test_no_mark_where_the_per_seed_t_interval_includes_zero(tmp_path: Path, method: str) -> None:
    """Issue 26's criterion, on a table with effects of every size: whatever the adjustment, a
    marked difference has a per-seed paired t-interval (S − 1 df) that excludes 0."""
    spec = {**table5_spec([0, 1, 2, 3]), "evalset_label": LABEL, "block_baseline": "none"}
    rng = np.random.default_rng(11)
    ranks = {}
    for row in spec["rows"]:
        for seed, run in zip([0, 1, 2, 3], row["runs"]):
            p = 0.3 + (0.15 if row["block"] == "5" else 0) + (0.02 * seed if row["attention"]
                                                              == "icsa" else 0)  # fmt: skip
            ranks[run] = _ranks(rng, p, 400)
            write_run(tmp_path, run, spec["evalset"], ranks[run])
    df = build_run_table(spec, tmp_path, load_paper(PAPER), Statistics(multiplicity=method))
    by_key = {(r["attention"], r["block"]): r["runs"] for r in spec["rows"]}
    checked = 0
    for rec, row in zip(df.to_dict("records"), spec["rows"]):
        for prefix, base in (
            ("dR@1", ("none", row["block"])),
            ("dR@1_block", (row["attention"], "none")),
        ):
            if math.isnan(rec[prefix]):
                continue
            per_seed = np.array([(ranks[a] == 0).mean() - (ranks[b] == 0).mean()
                                 for a, b in zip(row["runs"], by_key[base])])  # fmt: skip
            half = scipy_stats.t.ppf(0.975, 3) * per_seed.std(ddof=1) / 2
            includes_zero = abs(per_seed.mean()) <= half
            assert not (rec[f"{prefix}_marked"] and includes_zero), (rec["network"], prefix)
            checked += 1
    assert checked == 4 and df["dR@1_block_marked"].any()  # the block-5 gain is marked
