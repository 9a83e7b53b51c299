"""The whole tiny workflow for real (CI regression check): every table, metrics against a
committed baseline, an immediate rerun runs nothing, one changed parameter reruns only what it
affects.

Tolerances. Training and evaluation on CPU are deterministic (fixed seeds, one thread, exact
faiss search), so with the torch version and CPU instruction set the baseline was made with,
every recall must match to 1e-6 (JSON round trip; in practice bit for bit). Elsewhere, other
kernels (AVX2 vs AVX-512, another oneDNN) change float sums in the last bits; after training
that can swap near-tied neighbours, i.e. move a recall by whole queries. With 24 test and 12
TokyoTM queries one query is 4–8 %, so a foreign environment may drift by up to 3 queries per
recall — a real regression (wrong labels, broken mining, off-by-one ranks) moves far more.
Set ICSA_UPDATE_BASELINE=1 to rewrite tests/baselines/tiny_metrics.json after an intended change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers.browser import report_table_view
from tests.helpers.damage import flip, truncate
from tests.helpers.report import FIGURES, check_report, report_results
from tests.helpers.workflow import ROOT, job_counts, scratch_workdir, snakemake

pytestmark = pytest.mark.slow
BASELINE = ROOT / "tests" / "baselines" / "tiny_metrics.json"
TABLES = ["table1", "table2", "table3", "table4", "table5", "table6", "table7", "table9"]


def environment() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def collect_metrics(workdir: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((workdir / "results" / "metrics").glob("*/*.json")):
        data = json.loads(path.read_text())
        out[f"{path.parent.name}/{path.stem}"] = {
            "num_q": data["num_q"],
            "recalls": data["recalls"],
        }
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = scratch_workdir(tmp_path_factory.mktemp("tiny"))
    result = snakemake(workdir, "--cores", "2", "tables", timeout=3600)
    assert result.returncode == 0, result.stdout[-6000:]
    return workdir


def test_tables_have_the_configured_rows(tiny_run):
    sizes = {"table1": 5, "table2": 6, "table3": 3, "table4": 6, "table5": 8, "table6": 2,
             "table7": 8, "table9": 8}  # fmt: skip
    for name in TABLES:
        df = pd.read_csv(tiny_run / "results" / f"{name}.csv")
        assert len(df) == sizes[name], name
        md = (tiny_run / "results" / f"{name}.md").read_text()
        assert md.startswith(f"### Table {name[5:]}")
    t5 = pd.read_csv(tiny_run / "results" / "table5.csv")
    assert t5[["R@1", "R@5", "R@10", "R@20"]].notna().all().all()
    assert ((t5["R@1"] <= t5["R@5"]) & (t5["R@5"] <= t5["R@10"])).all()
    icsa = t5[t5["attention"] == "icsa"]
    assert (icsa["dR@1_low"] <= icsa["dR@1"]).all() and (icsa["dR@1"] <= icsa["dR@1_high"]).all()
    # Table 7: each module under both aggregators, compared with "none" under the same one.
    t7 = pd.read_csv(tiny_run / "results" / "table7.csv")
    assert sorted(zip(t7["attention"], t7["aggregation"])) == sorted(
        (a, g) for a in ("none", "icsa", "ch", "sp") for g in ("netvlad", "gem")
    )
    for aggregation, rows in t7.groupby("aggregation"):
        none = rows[rows["attention"] == "none"]["R@1"].item()
        for _, row in rows[rows["attention"] != "none"].iterrows():
            assert row["dR@1"] == pytest.approx(row["R@1"] - none), (aggregation, row.to_dict())
    gem = torch.load(tiny_run / "results/runs/pitts30k-vgg16-sp-gem-b5-s0/checkpoint_best.pt",
                     weights_only=True)  # fmt: skip
    assert "gem.p" in gem["model_state"] and not any("netvlad" in k for k in gem["model_state"])
    assert not list((tiny_run / "results" / "centroids").glob("*gem*"))  # GeM needs no k-means
    # Table 9: MixVPR and BoQ through every step; their NetVLAD and GeM rows are Table 7's runs.
    t9 = pd.read_csv(tiny_run / "results" / "table9.csv")
    aggregations = ("netvlad", "gem", "mixvpr", "boq")
    assert sorted(zip(t9["attention"], t9["aggregation"])) == sorted(
        (a, g) for a in ("none", "icsa") for g in aggregations
    )
    same = t9.merge(t7, on=["attention", "aggregation"], suffixes=("", "_t7"))
    assert len(same) == 4 and (same["R@1"] == same["R@1_t7"]).all()
    for aggregation in ("mixvpr", "boq"):
        state = torch.load(tiny_run / f"results/runs/pitts30k-vgg16-icsa-{aggregation}-b5-s0/"
                           "checkpoint_best.pt", weights_only=True)["model_state"]  # fmt: skip
        assert any(k.startswith(f"{aggregation}.") for k in state), aggregation
        assert not any(k.startswith(("netvlad.", "gem.")) for k in state), aggregation


def test_metrics_match_the_baseline(tiny_run):
    metrics = collect_metrics(tiny_run)
    assert len(metrics) == 27  # 25 trainings on the test split + 2 on the TokyoTM role
    if os.environ.get("ICSA_UPDATE_BASELINE"):
        BASELINE.parent.mkdir(parents=True, exist_ok=True)
        BASELINE.write_text(json.dumps({"environment": environment(), "metrics": metrics},
                                       indent=1, sort_keys=True) + "\n")  # fmt: skip
    baseline = json.loads(BASELINE.read_text())
    assert set(metrics) == set(baseline["metrics"])
    same_env = baseline["environment"] == environment()
    for key, ours in metrics.items():
        theirs = baseline["metrics"][key]
        tol = 1e-6 if same_env else 3.0 / theirs["num_q"]
        a = np.array([ours["recalls"][n] for n in sorted(theirs["recalls"])])
        b = np.array([theirs["recalls"][n] for n in sorted(theirs["recalls"])])
        assert np.abs(a - b).max() <= tol, (key, ours["recalls"], theirs["recalls"], tol)


def test_report_right_after_the_tables_target(tiny_run, tmp_path):
    # No figure exists yet: the report (no target) shows what exists, here every table page.
    result = snakemake(tiny_run, "--report", "results/report.html")
    assert result.returncode == 0, result.stdout[-3000:]
    tables = [f"{name}.html" for name in TABLES]
    check_report(tiny_run, figures=[], tables=tables)
    assert not set(FIGURES) & set(report_results(tiny_run / "results" / "report.html"))
    # In a real browser: Results → Tables → table5 shows Table 5, ours beside the paper's, and
    # the table's figure decoded right on the page.
    shot = tmp_path / "report-table5.png"
    text, images = report_table_view(tiny_run / "results" / "report.html", "Tables", "table5",
                                     shot)  # fmt: skip
    assert len(images) == 1 and min(images[0]) > 200, images
    t5 = pd.read_csv(tiny_run / "results" / "table5.csv")
    assert text.startswith("Table 5: Partially trained VGG16")
    assert "R@1 paper (real Pitts30k-test)" in text and "ΔR@1 vs block none" in text
    assert f"VGG16+ICSA block5 {t5.iloc[3]['R@1']:.1f}" in text, text[:2000]
    assert "synthetic" in text and shot.read_bytes()[:4] == b"\x89PNG"


def test_immediate_rerun_runs_nothing(tiny_run):
    result = snakemake(tiny_run, "-n", "--cores", "2", "tables")
    assert result.returncode == 0 and job_counts(result.stdout) == {}, result.stdout[-3000:]
    assert "Nothing to be done" in result.stdout


def test_one_training_parameter_reruns_only_what_it_affects(tiny_run):
    (tiny_run / "lr.yaml").write_text("train: {lr: 2.0e-4}\n")
    result = snakemake(tiny_run, "-n", "--cores", "2", "tables",
                       config="config/tiny.yaml lr.yaml")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    # Every training uses lr, so all 25 retrain and their 27 evaluations follow; the data,
    # the centroids, the efficiency measurement and Table 2 are untouched.
    expected = {"train": 25, "extract": 27, "evaluate": 27, "table": 7, "tables": 1}
    assert job_counts(result.stdout) == expected
    (tiny_run / "k.yaml").write_text("kmeans: {iterations: 11}\n")
    result = snakemake(tiny_run, "-n", "--cores", "2", "results/table6.csv",
                       config="config/tiny.yaml k.yaml")  # fmt: skip
    assert job_counts(result.stdout) == {"kmeans": 1, "train": 2, "extract": 2, "evaluate": 2,
                                         "table": 1}  # fmt: skip


def test_the_benchmark_layout_gives_the_same_metrics(tiny_run, tmp_path):
    # The same synthetic city written in the benchmark's file-name layout, read through it by
    # every step (check, k-means, training, extraction, evaluation with TokyoTM's time rule).
    workdir = scratch_workdir(tmp_path)
    (workdir / "layout.yaml").write_text(
        "datasets:\n  pitts30k: {root: data/synthetic/pitts30k, layout: benchmark}\n"
        "  tokyotm: {root: data/synthetic/tokyotm, layout: benchmark}\n"
    )
    run = "pitts30k-vgg16-icsa-b5-s0"
    targets = [f"results/metrics/{run}/{e}.json" for e in ("pitts30k-test", "tokyotm-val")]
    result = snakemake(workdir, "--cores", "2", *targets, config="config/tiny.yaml layout.yaml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert (workdir / "data/synthetic/pitts30k/images/test/queries").is_dir()
    assert not (workdir / "data/synthetic/pitts30k/datasets").exists()
    ours, theirs = collect_metrics(workdir), collect_metrics(tiny_run)
    assert len(ours) == 2
    for key, value in ours.items():
        assert value == theirs[key], key  # bit for bit: same rows, same order, same training


@pytest.mark.parametrize(
    "damaged, how",
    [(None, None), ("checkpoint_last.pt", "truncate"), ("checkpoint_last.pt", "flip"),
     ("checkpoint_last.pt.digest.json", "truncate"), ("checkpoint_best.pt", "flip"),
     ("run.json", "truncate"), ("prefix_cache/train-q.npy", "flip"),
     ("prefix_cache/val-db.json", "truncate")],
)  # fmt: skip
def test_forced_rerun_of_a_finished_training_keeps_its_best_checkpoint(tiny_run, damaged, how):
    # Snakemake deletes the declared outputs (checkpoint_best.pt) before it reruns the job;
    # `icsa train` resumes the finished run and rewrites the best checkpoint from its state —
    # also when a file of that state was damaged (it is verified, discarded with a warning
    # line, and the run resumes from what is left or starts again): never a wedge.
    # (Last in this file: it makes the run's downstream files older than the checkpoint.)
    run = tiny_run / "results" / "runs" / "pitts30k-vgg16-icsa-b5-s0"
    before = torch.load(run / "checkpoint_best.pt", weights_only=True)
    history = json.loads((run / "history.json").read_text())
    if damaged:
        {"truncate": truncate, "flip": flip}[how](run / "state" / damaged)
    target = "results/runs/pitts30k-vgg16-icsa-b5-s0/checkpoint_best.pt"
    result = snakemake(tiny_run, "--cores", "1", "--forcerun", "train", "--", target)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {"train": 1}
    after = torch.load(run / "checkpoint_best.pt", weights_only=True)
    assert after["epoch"] == before["epoch"]
    for key, value in before["model_state"].items():
        assert torch.equal(value, after["model_state"][key]), key
    timings = ("train_s", "cache_refresh_s", "val_s")
    rows = json.loads((run / "history.json").read_text())
    assert [{k: v for k, v in r.items() if k not in timings} for r in rows] == [
        {k: v for k, v in r.items() if k not in timings} for r in history
    ]
    if damaged:
        log = tiny_run / "results" / "logs" / "train" / "pitts30k-vgg16-icsa-b5-s0.log"
        warnings = [line for line in log.read_text().splitlines() if Path(damaged).name in line]
        assert warnings, log.read_text()[-3000:]


def _more_epochs(workdir: Path, run: str, epochs: int):
    """Train `run` to `epochs` through Snakemake (the recipe changed: its params trigger)."""
    (workdir / "epochs.yaml").write_text(f"train: {{epochs: {epochs}}}\n")
    target = f"results/runs/{run}/checkpoint_best.pt"
    return snakemake(workdir, "--cores", "1", target, config="config/tiny.yaml epochs.yaml")


def _trained_epochs(workdir: Path, run: str) -> list[dict]:
    history = json.loads((workdir / "results" / "runs" / run / "history.json").read_text())
    return [row for row in history if row["epoch"] > 0]


def test_more_epochs_resume_a_finished_run_under_snakemake(tiny_run):
    run = "pitts30k-vgg16-none-b5-s0"
    before = _trained_epochs(tiny_run, run)
    assert [row["epoch"] for row in before] == [1]
    result = _more_epochs(tiny_run, run, 2)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {"train": 1}
    log = (tiny_run / "results" / "logs" / "train" / f"{run}.log").read_text()
    assert "resuming" in log and "from epoch 1" in log, log[-3000:]
    after = _trained_epochs(tiny_run, run)
    assert [row["epoch"] for row in after] == [1, 2]
    assert after[0] == before[0]  # epoch 1 was not trained again
    # Another recipe value is another run: the state is not resumed.
    (tiny_run / "lr.yaml").write_text("train: {lr: 3.0e-4}\n")
    target = f"results/runs/{run}/checkpoint_best.pt"
    result = snakemake(tiny_run, "--cores", "1", target, config="config/tiny.yaml lr.yaml")
    assert result.returncode == 0, result.stdout[-3000:]
    log = (tiny_run / "results" / "logs" / "train" / f"{run}.log").read_text()
    assert "restarting from scratch" in log and "recipe.lr: was 0.0001, now 0.0003" in log
    assert [row["epoch"] for row in _trained_epochs(tiny_run, run)] == [1]


def test_a_moved_checkout_keeps_its_runs_state(tiny_run, tmp_path):
    # Last in this file: it moves the module's workflow folder.
    moved = tmp_path / "elsewhere" / "checkout"
    moved.parent.mkdir()
    tiny_run.rename(moved)
    run = "pitts30k-vgg16-icsa-b5-s0"
    fingerprint = json.loads((moved / "results/runs" / run / "state/run.json").read_text())
    assert str(tiny_run) not in json.dumps(fingerprint)  # content digests, no paths
    result = _more_epochs(moved, run, 2)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {"train": 1}
    log = (moved / "results" / "logs" / "train" / f"{run}.log").read_text()
    assert "from epoch 1" in log and "restarting" not in log, log[-3000:]
    assert [row["epoch"] for row in _trained_epochs(moved, run)] == [1, 2]
