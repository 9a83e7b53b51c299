"""Tables: paired intervals, mean ± std, composition from metrics files, the paper's numbers."""

from __future__ import annotations

import base64
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as scipy_stats

from icsa import layout
from icsa.cli import main as icsa_main
from icsa.errors import InputError
from icsa.tables import (
    MeanStd,
    Statistics,
    build_efficiency_table,
    build_run_table,
    difference_interval,
    format_mean_std,
    hits_at,
    load_paper,
    mean_std,
)
from tests.helpers.tables import PAPER, table5_spec, write_run
from tests.helpers.workflow import ROOT


def correlated_hits(rng: np.random.Generator, m: int, p_a: float, p_b: float):
    """Found@1 of two models on the same queries: one latent difficulty per query, so the hits
    are positively correlated (as for two similar models) and E[a − b] = p_a − p_b exactly."""
    u = rng.random(m)
    return (u < p_a).astype(np.int8), (u < p_b).astype(np.int8)


# ---- stats -------------------------------------------------------------------------------------
def test_one_seed_interval_covers_true_difference():
    # 40 independent evaluation sets; a 95% interval must contain the population difference
    # (0.1) in about 95% of them. 34/40 is > 3 binomial sd below 95%: a real failure, not noise.
    covered = 0
    for rep in range(40):
        a, b = correlated_hits(np.random.default_rng(rep), 800, 0.6, 0.5)
        ci = difference_interval(a, b, confidence=0.95)
        assert ci.low <= ci.difference <= ci.high and ci.covers == "queries only"
        covered += ci.low <= 0.1 <= ci.high
    assert covered >= 34, covered


def test_one_seed_interval_is_the_paired_t_interval_over_queries():
    a, b = correlated_hits(np.random.default_rng(1), 4000, 0.55, 0.5)
    d = a.astype(float) - b
    ci = difference_interval(a, b)
    half = scipy_stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert ci.difference == pytest.approx(d.mean(), abs=1e-12)
    assert (ci.low, ci.high) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-12)


def test_interval_pairs_queries():
    # Identical answers on every query: the paired difference is exactly zero, however noisy
    # each model's own recall is. An unpaired interval would be wide here.
    a = (np.random.default_rng(2).random(500) < 0.5).astype(int)
    ci = difference_interval(a, a.copy())
    assert (ci.difference, ci.low, ci.high, ci.p_value) == (0.0, 0.0, 0.0, 1.0)
    # Every query found by one model and missed by the other: certain, p = 0.
    sure = difference_interval(np.ones((3, 50)), np.zeros((3, 50)))
    assert (sure.low, sure.high, sure.p_value) == (1.0, 1.0, 0.0)


def test_interval_pairs_seeds_and_checks_shapes():
    rng = np.random.default_rng(4)
    pairs = [correlated_hits(rng, 300, 0.7, 0.6), correlated_hits(rng, 300, 0.5, 0.45)]
    a = np.stack([p[0] for p in pairs])
    b = np.stack([p[1] for p in pairs])
    ci = difference_interval(a, b)
    per_seed = [p[0].mean() - p[1].mean() for p in pairs]
    assert ci.difference == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert ci.per_seed == pytest.approx(per_seed)
    assert ci.num_seeds == 2 and ci.num_queries == 300 and ci.covers == "seeds and queries"
    with pytest.raises(InputError, match="same"):
        difference_interval(a, b[:, :200])
    with pytest.raises(InputError, match="confidence"):
        difference_interval(a, b, confidence=1.5)


def test_mean_std_and_formatting():
    stat = mean_std([84.0, 85.0, 86.0])
    assert stat == MeanStd(85.0, 1.0, 3)
    assert format_mean_std(stat) == "85.0 ± 1.0"
    assert format_mean_std(mean_std([84.14])) == "84.1"  # one seed: no ± (std undefined)
    assert math.isnan(mean_std([1.0]).std)
    assert format_mean_std(MeanStd(0.5, 0.123, 2), digits=2) == "0.50 ± 0.12"
    assert format_mean_std(None) == ""


def test_hits_at():
    ranks = np.array([0, 3, -1, 9, 1])
    assert hits_at(ranks, 1).tolist() == [True, False, False, False, False]
    assert hits_at(ranks, 5).tolist() == [True, True, False, False, True]


# ---- composition from metrics files ------------------------------------------------------------


def make_metrics(tmp_path: Path, spec: dict, m: int = 400) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ranks = {}
    for row in spec["rows"]:
        for run in row["runs"]:
            ranks[run] = np.where(rng.random(m) < 0.3, -1, rng.integers(0, 20, m))
            write_run(tmp_path, run, spec["evalset"], ranks[run])
    return ranks


def test_run_table_from_metrics_with_paper_values(tmp_path):
    spec = table5_spec([0, 1])
    ranks = make_metrics(tmp_path, spec)
    df = build_run_table(spec, tmp_path, load_paper(PAPER), Statistics())
    assert list(df["network"]) == ["VGG16", "VGG16+ICSA", "VGG16", "VGG16+ICSA"]
    assert list(df["block"]) == ["none", "none", "block5", "block5"]
    icsa5 = df.iloc[3]
    r1 = [100 * (ranks[f"pitts30k-vgg16-icsa-b5-s{s}"] == 0).mean() for s in (0, 1)]
    assert icsa5["R@1"] == pytest.approx(np.mean(r1))
    assert icsa5["R@1_std"] == pytest.approx(np.std(r1, ddof=1))
    base = [100 * (ranks[f"pitts30k-vgg16-none-b5-s{s}"] == 0).mean() for s in (0, 1)]
    assert icsa5["dR@1"] == pytest.approx(np.mean(r1) - np.mean(base))
    assert icsa5["dR@1_low"] <= icsa5["dR@1"] <= icsa5["dR@1_high"]
    assert icsa5["baseline"] == "VGG16" and df.iloc[2]["baseline"] == ""
    # The paper's Table 5 beside ours, matched by (backbone, attention, block).
    assert df.iloc[0][["paper_R@1", "paper_R@5", "paper_R@10"]].tolist() == [80.5, 91.8, 95.2]
    assert icsa5[["paper_R@1", "paper_R@5", "paper_R@10"]].tolist() == [85.3, 94.5, 96.8]


def write_histories(results: Path, spec: dict) -> None:
    """Each run's history.json as `icsa train` writes it: epoch 0 logged, best epoch 2 of 3."""
    for row in spec["rows"]:
        for run in row["runs"]:
            history = [{"epoch": 0, "recall@5": 0.5}] + [
                {"epoch": e, "recall@5": r, "best_epoch": b, "stopped_early": False}
                for e, r, b in ((1, 0.6, 1), (2, 0.7, 2), (3, 0.65, 2))
            ]
            path = Path(layout.history_file(run, "json", results))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(history))


def test_cli_writes_csv_markdown_json(tmp_path, capsys):
    spec = table5_spec([0])
    make_metrics(tmp_path / "results", spec)
    write_histories(tmp_path / "results", spec)
    out = tmp_path / "out"
    code = icsa_main([
        "tables", "build", "--spec", json.dumps(spec), "--paper", str(PAPER),
        "--statistics", json.dumps({"confidence": 0.9, "multiplicity": "bh", "power": 0.9}),
        "--results", str(tmp_path / "results"),
        "--out-csv", str(out / "t5.csv"),
        "--out-md", str(out / "t5.md"), "--out-json", str(out / "t5.json"),
        "--out-html", str(out / "t5.html"), "--out-png", str(out / "t5.png"),
        "--out-recall-csv", str(out / "t5_recall.csv"),
        "--out-curves-csv", str(out / "t5_curves.csv"),
    ])  # fmt: skip
    assert code == 0
    df = pd.read_csv(out / "t5.csv")
    assert len(df) == 4 and {"R@1", "R@20", "dR@1_low", "paper_R@10"} <= set(df.columns)
    md = (out / "t5.md").read_text()
    assert md.startswith("### Table 5: Partial")
    assert "| VGG16+ICSA | block5 |" in md and "| 85.3 |" in md and "[90% CI]" in md
    assert f"{df.iloc[3]['R@1']:.1f}" in md
    assert list(df["best_epoch"].astype(str)) == ["2"] * 4 and "| 2 / 3 |" in md
    summary = json.loads((out / "t5.json").read_text())
    assert summary["VGG16+ICSA block5"]["R@1"] == pytest.approx(df.iloc[3]["R@1"])
    # `dvc metrics show`: Recall@N and ΔR@1 per row and per seed (one seed: no MDE), not the
    # paper's constants or bookkeeping.
    recalls = {"R@1", "R@5", "R@10", "R@20", "R@1_s0"}
    assert set(summary["VGG16+ICSA block5"]) == recalls | {"dR@1", "dR@1_s0"}
    assert set(summary["VGG16 block5"]) == set(summary["VGG16 none"]) == recalls
    assert summary["VGG16+ICSA block5"]["R@1_s0"] == pytest.approx(df.iloc[3]["R@1"], abs=0.05)
    # The data of the DVC plots: Recall@N per row; every run's history, one line per epoch.
    recall = pd.read_csv(out / "t5_recall.csv")
    assert len(recall) == 4 * 4 and list(recall["N"][:4]) == [1, 5, 10, 20]
    icsa = recall[recall["row"] == "VGG16+ICSA block5"].set_index("N")["recall"]
    assert icsa[1] == pytest.approx(df.iloc[3]["R@1"]) and icsa[20] == pytest.approx(
        df.iloc[3]["R@20"]
    )
    curves = pd.read_csv(out / "t5_curves.csv")
    assert len(curves) == 4 * 4 and set(curves["run"]) == {r["runs"][0] for r in spec["rows"]}
    assert list(curves["val_recall@5"][:4]) == pytest.approx([50, 60, 70, 65])
    assert curves["loss"].isna().all() and set(curves["epoch"]) == {0, 1, 2, 3}
    page = (out / "t5.html").read_text()
    assert page.count("<tr>") == 1 + len(df) and "<th class=paper>R@1 paper" in page
    assert f"<td>{df.iloc[3]['R@1']:.1f}</td>" in page and "<script" not in page
    # The table's figure: written, and the same PNG embedded in the page right after the table.
    png = (out / "t5.png").read_bytes()
    assert png[:4] == b"\x89PNG" and base64.b64encode(png).decode() in page
    assert page.index("</table>") < page.index("<img class=figure") < page.index("class=note")


def test_mismatched_perquery_file_is_an_error(tmp_path):
    spec = table5_spec([0])
    make_metrics(tmp_path, spec)
    run = spec["rows"][1]["runs"][0]
    np.savez(
        layout.perquery_file(run, "pitts30k-test", tmp_path), first_hit_rank=np.zeros(400, int)
    )
    with pytest.raises(InputError, match="per-query Recall@1"):
        build_run_table(spec, tmp_path, load_paper(PAPER), Statistics())
    Path(layout.metrics_file(run, "pitts30k-test", tmp_path)).unlink()
    with pytest.raises(InputError, match="not found"):
        build_run_table(spec, tmp_path, load_paper(PAPER), Statistics())


def test_an_unreadable_perquery_file_is_named(tmp_path, capsys):
    """Nothing lost, round two: a zero-byte per-query .npz ended in numpy's EOFError."""
    spec = table5_spec([0])
    make_metrics(tmp_path, spec)
    perquery = Path(layout.perquery_file(spec["rows"][1]["runs"][0], "pitts30k-test", tmp_path))
    argv = ["tables", "build", "--spec", json.dumps(spec), "--paper", str(PAPER),
            "--results", str(tmp_path), "--out-csv", str(tmp_path / "t.csv"),
            "--out-md", str(tmp_path / "t.md")]  # fmt: skip
    for content in (b"", b"PK\x03\x04 truncated"):
        perquery.write_bytes(content)
        assert icsa_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"icsa tables: error: per-query file {perquery}: cannot be read")
        assert f"{len(content)} bytes" in err and err.count("\n") == 1, err
    assert not (tmp_path / "t.csv").exists()


def test_efficiency_table_ratios_and_paper_sizes(tmp_path):
    rows = [
        {"module": m, "params": p, "size_kb": p * 4 / 1024, "time_ms_median": t,
         "time_ms_iqr": 0.01, "batch_size": 1, "device": "cpu", "repeats": 5}
        for m, p, t in [("ia", 614400, 0.2), ("icsa", 1712, 0.4), ("se", 32768, 0.3)]
    ]  # fmt: skip
    path = tmp_path / "eff.json"
    path.write_text(json.dumps({"rows": rows, "metadata": {"channels": 512}}))
    df = build_efficiency_table(
        {"table": "table2", "attentions": ["ia", "icsa", "se"]}, path, load_paper(PAPER)
    )
    assert df["size_kb"].round(1).tolist() == df["paper_size_kb"].tolist() == [2400.0, 6.7, 128.0]
    assert df["time_vs_icsa"].tolist() == pytest.approx([0.5, 1.0, 0.75])
    assert df["paper_time_vs_icsa"].tolist() == pytest.approx([8.4 / 11.9, 1.0, 10.2 / 11.9])
    with pytest.raises(InputError, match="cbam"):
        build_efficiency_table({"table": "table2", "attentions": ["cbam"]}, path, load_paper(PAPER))


# ---- the paper's numbers -----------------------------------------------------------------------
def test_paper_values_cover_every_default_table_row():
    paper = load_paper(PAPER)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for name, spec in config["tables"].items():
        if name in ("table7", "table9"):  # beyond the paper (other aggregators): no values
            assert name not in paper
            continue
        if name == "table2":
            assert {r["module"] for r in paper["table2"]["rows"]} == {"ia", "icsa", "se", "cbam"}
            continue
        blocks = ["5" if str(b) == "last" else str(b) for b in spec["blocks"]]
        for backbone, block, att in itertools.product(
            spec["backbones"], blocks, spec["attentions"]
        ):
            row = next(
                r
                for r in paper[name]["rows"]
                if (r["backbone"], r["attention"], str(r["block"])) == (backbone, att, block)
            )
            assert all(0 < row[f"R@{n}"] <= 100 for n in (1, 5, 10)), (name, row)  # fmt: skip
    # Cross-table consistency of the paper itself: the VGG16+ICSA block5 model is one model.
    icsa = [paper[t]["rows"][i] for t, i in (("table1", 2), ("table3", 0), ("table5", 3))]
    assert all(r["attention"] == "icsa" and r["R@1"] == 85.3 for r in icsa)


def test_statistics_settings_are_checked():
    assert Statistics.from_dict({}) == Statistics(confidence=0.95, multiplicity="holm", power=0.8)
    with pytest.raises(InputError, match=r"statistics.multiplicity: 'bonferroni'; expected one of"):
        Statistics.from_dict({"multiplicity": "bonferroni"})
    with pytest.raises(InputError, match=r"statistics.power: 1.5; expected a number in \(0, 1\)"):
        Statistics.from_dict({"power": 1.5})
    # The old bootstrap's keys are gone: named, with the valid ones.
    with pytest.raises(InputError, match=r"unknown keys \['bootstrap_samples'\]; valid keys"):
        Statistics.from_dict({"bootstrap_samples": 1000})


def test_a_row_listed_twice_is_refused(tmp_path):
    """Nothing lost, round two: a spec (`icsa tables build --spec`) with one row twice."""
    spec = table5_spec([0])
    spec["rows"].append(dict(spec["rows"][1]))
    make_metrics(tmp_path, spec)
    with pytest.raises(InputError) as err:
        build_run_table(spec, tmp_path, load_paper(PAPER), Statistics())
    first = str(err.value).splitlines()[0]
    both = "('vgg16', 'netvlad', 'none', 'icsa'); expected each once"
    assert first == f"table5 spec rows: entries 2 and 5 are both {both}", first
    twice = r"table2 spec attentions: entries 1 and 3 are both 'icsa'"
    with pytest.raises(InputError, match=twice):
        build_efficiency_table(
            {"table": "table2", "attentions": ["icsa", "ia", "icsa"]}, tmp_path / "eff.json", {}
        )
