"""`icsa plan`: sizes checked against what the pipeline really writes and counts.

- the planned prefix-cache bytes equal the cache files training writes (tiny city);
- the budget verdict is the trainer's own (plan_prefix_cache), and the run warns up front;
- FLOPs agree with VGG16's published count; descriptor bytes with K·C·4 per image;
- the CLI plans the paper's config from a fresh clone (published split sizes, no data).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from icsa import plan
from icsa.spec import ModelSpec
from tests.helpers.city import MODEL, QUICK, make_trainer

ROOT = Path(__file__).resolve().parents[1]
RUN = "pitts30k-vgg16-icsa-b5-s0"
ICSA = str(Path(sys.executable).with_name("icsa"))


def tiny_config(root: Path, **train) -> dict:
    model = {k: MODEL[k] for k in ("num_clusters", "image_size", "weights")}
    recipe = {**QUICK, "prefix_cache_dtype": "float16", **train}
    return {"dataset": "pitts30k", "datasets": {"pitts30k": {"root": str(root)}},
            "model": model, "train": recipe}  # fmt: skip


def test_planned_prefix_cache_is_what_training_writes(tiny_city):
    root, _ = tiny_city
    planned = plan.plan_training(tiny_config(root), RUN, plan.Rates(100.0))
    cache = root / "template" / "state" / "prefix_cache"  # built by the fixture's trainer
    for role in ("train", "val"):
        written = sum(np.load(cache / f"{role}-{p}.npy", mmap_mode="r").nbytes for p in ("db", "q"))
        assert planned["prefix_cache_gb"][role] * plan.GB == pytest.approx(written, rel=1e-12)
    assert planned["counts"]["source"] == str(root) and planned["over_budget"] == []
    assert planned["epoch_h_recompute"] > planned["epoch_h"] > 0


def test_budget_verdict_is_the_trainers_and_the_run_says_so_first(tiny_city, tmp_path, caplog):
    root, _ = tiny_city
    full = plan.plan_training(tiny_config(root), RUN, plan.Rates(100.0))
    train_mb = full["prefix_cache_gb"]["train"] * plan.GB / 2**20
    for budget, over in ((train_mb * 1.01, ["val"]), (train_mb * 0.5, ["train", "val"])):
        planned = plan.plan_training(tiny_config(root, prefix_cache_budget_mb=budget), RUN,
                                     plan.Rates(100.0))  # fmt: skip
        assert planned["over_budget"] == over, budget
    # nothing cached: the "cached" epoch is the recomputing one
    assert planned["epoch_h"] == pytest.approx(planned["epoch_h_recompute"])
    with caplog.at_level(logging.WARNING, logger="icsa.train.state"):
        trainer = make_trainer(tiny_city, tmp_path / "run", prefix_cache_budget_mb=train_mb * 0.5)
    assert "over train.prefix_cache_budget_mb" in caplog.text and "val" in caplog.text
    assert not trainer.sources.train_db.cached  # the warning came before the sources were made


def test_flops_and_descriptor_size_match_published_counts():
    # VGG16's 13 conv layers at 224×224: 15.35 G multiply-adds (the 3 FC layers, which icsa
    # cuts off, add 0.12 G to the usual 15.47 G), i.e. 30.7 GFLOP.
    c = plan.model_costs(ModelSpec("vgg16", "none", 64, (224, 224)))
    assert c.prefix_gflop + c.trained_gflop == pytest.approx(30.7, rel=0.01)
    assert c.descriptor_dim == 64 * 512 and c.trainable_params < 100_000  # block none
    b5 = plan.model_costs(ModelSpec("vgg16", "none", 64, (480, 640), lowest_trained_block="5"))
    assert b5.prefix_values == 512 * 30 * 40  # pool4's output feeds block 5 at 480×640


def test_cli_plans_the_paper_config_without_its_data(tmp_path):
    out = tmp_path / "plan.json"
    result = subprocess.run(
        [ICSA, "plan", "--configfile", "config/pittsburgh.yaml", "--gflops", "1000",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    planned = json.loads(out.read_text())
    runs = {r["run"]: r for r in planned["trainings"]}
    b5 = runs["pitts30k-vgg16-icsa-b5-s0"]
    assert b5["counts"] == {"train": [10000, 7416], "val": [10000, 7608], "source": "published"}
    # float16 prefix of 512×30×40 per image, train database + queries
    assert b5["prefix_cache_gb"]["train"] == pytest.approx(17416 * 512 * 30 * 40 * 2 / 1e9)
    assert runs["pitts30k-vgg16-icsa-b3-s0"]["over_budget"] == ["train", "val"]
    test = [e for e in planned["extractions"] if e["evalset"] == "pitts30k-test"][0]
    assert test["descriptors_gb"] == pytest.approx(16816 * 64 * 512 * 4 / 1e9)
    assert "! over train.prefix_cache_budget_mb" in result.stdout


def test_trainings_over_this_machines_memory_are_named_for_cpu_configs():
    """The rehearsal's block-1 training at 480×640 (35 GB at peak) was killed for memory on a
    24 GB machine; the plan names such runs before anything starts, for CPU configs only."""
    planned = {"trainings": [{"run": "b5", "peak_ram_gb": 2.4, "run_h": 1.0},
                             {"run": "b1", "peak_ram_gb": 35.4, "run_h": 1.0}],
               "extractions": []}  # fmt: skip
    notes = plan.check_resources({"device": "cpu"}, planned, memory_gb=24.0)
    assert len(notes) == 1 and "b1;" in notes[0] and "b5" not in notes[0]
    assert "35.4 GB" in notes[0] and "24.0 GB" in notes[0]
    assert plan.check_resources({"device": "cuda"}, planned, memory_gb=24.0) == []
    assert plan.check_resources({"device": "cpu"}, planned, memory_gb=64.0) == []
    assert 1 < plan.machine_memory_gb() < 1e5


def test_plan_outside_the_repository_root_says_where_to_run_it(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")  # as make rehearse's work folder
    result = subprocess.run([ICSA, "plan", "--gflops", "100"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode != 0
    first = result.stderr.strip().splitlines()[0]
    assert "config.schema.yaml: not found (run from the repository root)" in first, first


def test_planned_mining_cache_is_what_a_refresh_holds(tiny_city, tmp_path, monkeypatch):
    root, _ = tiny_city
    refresh = 5  # queries per refresh: the cache is the database plus one chunk's queries
    planned = plan.plan_training(tiny_config(root, cache_refresh=refresh), RUN, plan.Rates(100.0))
    from icsa.train.loop import TripletTrainer

    held, original = [], TripletTrainer.describe_on_device

    def record(self, src, indices, keep_on=None):
        out = original(self, src, indices, keep_on)
        if keep_on is not None:  # the mining cache's refreshes (validation keeps none)
            held.append(out.element_size() * out.nelement())
        return out

    monkeypatch.setattr(TripletTrainer, "describe_on_device", record)
    trainer = make_trainer(tiny_city, tmp_path / "run", cache_refresh=refresh)
    trainer.train_epoch(1)
    biggest = held[0] + held[1]  # the first refresh: the database, then a full chunk
    assert planned["mining_cache_gb"] * plan.GB == biggest
