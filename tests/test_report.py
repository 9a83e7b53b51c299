"""Figure rules (workflow/rules/figures.smk) on the tiny config, and the Snakemake HTML report.

The real workflow (a temporary copy of workflow/ and config/tiny.yaml) runs only its figure
rules (`--allowed-rules`), on what the upstream rules would have left: a tiny evaluation set,
real tiny checkpoints with histories, per-query results and Tables 1-6, written by the test so
that this file does not retrain anything (the ICSA/IA checkpoints get a few SGD steps with
weight decay, as in training). Then `snakemake --report` must build and contain every table and
figure with its caption.

`check_figures(workdir)` and `check_report(workdir)` make no assumption about sizes, so the
end-to-end tiny run (tests/test_workflow_e2e.py) can apply them to a fully trained workflow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from icsa.data import DbStruct, write_dbstruct
from icsa.models import build_model
from icsa.tables.html import write_table_html
from icsa.train.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers.report import FIGURES, check_report

pytestmark = pytest.mark.slow  # a real Snakemake run: ~10 CLI jobs (each imports torch)

REPO = Path(__file__).resolve().parents[1]
RUNS = {a: f"pitts30k-vgg16-{a}-b5-s0" for a in ("none", "ia", "icsa")}


FIGURE_RULES = [
    "figures",
    "fig_local_stats",
    "fig5_singular_values",
    "fig6_8_tsne",
    "fig9_10_attention_weights",
    "fig4_retrieval_examples",
    "training_curves",
]


def _snakemake(
    workdir: Path, *options: str, target: str = "figures"
) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "snakemake"),
            "--configfile",
            "config/tiny.yaml",
            *options,
            "--allowed-rules",
            *FIGURE_RULES,
            "--",
            target,
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _train_with_weight_decay(model: torch.nn.Module, steps: int = 4) -> None:
    """A few triplet SGD steps (weight decay 1e-3) on random images, as `icsa train` would."""
    torch.manual_seed(0)
    images = torch.randn(6, 3, 64, 80)
    with torch.no_grad():
        prefix = model.frozen_prefix(images)
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad],
        lr=1.0,
        momentum=0.9,
        weight_decay=1e-3,
    )
    for _ in range(steps):
        d = model.forward_from_prefix(prefix)  # [6, K*C]
        loss = torch.nn.functional.triplet_margin_loss(d[0:2], d[2:4], d[4:6], margin=0.1**0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _tiny_upstream(work: Path) -> None:
    """What the training/evaluation/table rules would have written, at tiny size."""
    rng = np.random.default_rng(0)
    root = work / "data" / "synthetic" / "pitts30k"  # config/tiny.yaml's root
    db_names = [f"000/db{i}.png" for i in range(10)]
    q_names = [f"q{i}.png" for i in range(4)]
    for sub, names in (("", db_names), ("queries_real", q_names)):
        for name in names:
            path = root / sub / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    db_utm = np.stack([np.arange(10) * 20.0, np.zeros(10)], axis=1)
    q_utm = np.array([[0.0, 3.0], [40.0, 0.0], [95.0, 0.0], [500.0, 0.0]])
    write_dbstruct(
        root / "datasets" / "pitts30k_test.mat",
        DbStruct("test", db_names, db_utm, q_names, q_utm, 10, 4, 25.0, 625.0, 100.0),
    )
    for att, run in RUNS.items():
        model = build_model("vgg16", att, num_clusters=4, image_size=(64, 80))
        if att != "none":
            _train_with_weight_decay(model)
        folder = work / "results" / "runs" / run
        save_checkpoint(
            folder / "checkpoint_best.pt",
            {"model_state": model.state_dict(), "model_config": model.config},
        )
        (folder / "history.csv").write_text(
            "epoch,lr,loss,recall@1,recall@5\n0,,,0.1,0.2\n1,0.0001,0.3,0.2,0.4\n"
        )
    idx = np.argsort(np.linalg.norm(q_utm[:, None] - db_utm[None], axis=2), axis=1)[:, :10]
    metrics = work / "results" / "metrics" / RUNS["icsa"]
    metrics.mkdir(parents=True)
    np.savez(
        metrics / "pitts30k-test-perquery.npz",
        indices=idx,
        distances=np.zeros(idx.shape, np.float32),
        first_hit_rank=np.array([0, 0, 1, -1]),
    )
    (work / "results" / "datasets").mkdir()
    (work / "results" / "datasets" / "pitts30k.json").write_text("{}\n")  # check_dataset's index
    for n in range(1, 7):
        (work / "results" / f"table{n}.csv").write_text(f"network,R@1\nVGG16,{n}1.5\n")
        markdown = f"### Table {n}: T\n\n| network | R@1 |\n|---|---|\n| VGG16 | {n}1.5 |\n"
        (work / "results" / f"table{n}.md").write_text(markdown)
        write_table_html(markdown, work / "results" / f"table{n}.html")


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "config", work / "config")
    _tiny_upstream(work)
    run = _snakemake(work, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    return work


# ---- checks, also for the end-to-end tiny run (tests/test_workflow_e2e.py can import them) ---


def check_figures(workdir: Path) -> None:
    """Every figure is a PNG and the data beside it is sane, whatever the run's sizes."""
    fig = workdir / "results" / "figures"
    for name in FIGURES:
        assert (fig / name).read_bytes()[:4] == b"\x89PNG" and (fig / name).stat().st_size > 2000
    stats = {
        str(z["label"]): z
        for z in (np.load(p) for p in sorted((fig / "data" / "local_stats").glob("*.npz")))
    }
    counts = json.loads((fig / "fig5_singular_values.json").read_text())
    assert set(counts) == set(stats) == {"VGG16", "VGG16+IA", "VGG16+ICSA"}
    sv = np.genfromtxt(
        fig / "fig5_singular_values.csv", delimiter=",", names=True, dtype=None, encoding=None
    )
    for model, z in stats.items():
        vals = sv["singular_value"][sv["model"] == model]
        assert vals.size == min(int(z["count"]), z["gram"].shape[0])
        assert np.all(np.diff(vals) <= 0) and vals[0] > 0 and vals[-1] >= 0
        ratios = sv["ratio"][sv["model"] == model]
        assert ratios[0] == 1.0 and np.all(ratios <= 1.0)
        assert counts[model]["above"]["0.1"] == int(np.sum(ratios > 0.1))
    tsne = np.load(fig / "fig6_8_tsne.npz")
    points = sum(min(len(z["sample"]), 2000) for z in stats.values())
    assert tsne["points"].shape == (points, 2) and np.isfinite(tsne["points"]).all()
    # Figs. 9-10: arrays of the module's shape; the trained ICSA's spatial weights all equal
    # and shrunk below 1 by weight decay alone, its channel weights not all equal.
    run = next((workdir / "results" / "runs").glob("*-vgg16-icsa-*"))
    state = load_checkpoint(run / "checkpoint_best.pt")["model_state"]
    c = state["attention.channel_weight"].numel()
    h, w = state["attention.spatial_weight"].shape[-2:]
    channel = np.loadtxt(fig / "fig9_channel_weights.csv", delimiter=",")
    spatial = np.loadtxt(fig / "fig10_spatial_weights.csv", delimiter=",", ndmin=2)
    assert channel.size == c and channel.shape[0] <= channel.shape[1] and spatial.shape == (h, w)
    assert np.ptp(spatial) < 1e-6 and spatial.max() < 1.0 and np.ptp(channel) > 0
    weights = json.loads((fig / "fig9_10_attention_weights.json").read_text())
    assert weights["spatial"]["spread"] < 1e-6 and weights["channel"]["spread"] > 0
    shown = np.genfromtxt(fig / "fig4_retrieval_examples.csv", delimiter=",", names=True,
                          dtype=None, encoding=None)  # fmt: skip
    assert len(shown) % 5 == 0 and len(shown) > 0 and set(shown["rank"]) == {1, 2, 3, 4, 5}
    assert (shown["hit"] == (shown["distance_m"] <= 25.0)).all()


# ---- tests --------------------------------------------------------------------------------


def test_figure_rules_write_images_and_sane_data(workflow_run):
    check_figures(workflow_run)
    fig = workflow_run / "results" / "figures"
    assert np.loadtxt(fig / "fig9_channel_weights.csv", delimiter=",").shape == (16, 32)
    assert np.loadtxt(fig / "fig10_spatial_weights.csv", delimiter=",").shape == (4, 5)
    weights = json.loads((fig / "fig9_10_attention_weights.json").read_text())
    assert weights["spatial"]["max"] < 0.999  # 4 steps at lr 1 shrink visibly
    assert np.load(fig / "fig6_8_tsne.npz")["points"].shape == (3 * 14 * 10, 2)
    assert len((fig / "fig4_retrieval_examples.csv").read_text().splitlines()) == 1 + 4 * 5
    # an immediate rerun has nothing to do
    again = _snakemake(workflow_run, "--cores", "1", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_report_contains_every_figure(workflow_run):
    # The report covers the DAG of its target: `figures` holds every figure.
    # (The table pages come from rule `table`, which this test does not run: the end-to-end
    # report test, tests/test_workflow_e2e.py, checks them.)
    out = _snakemake(workflow_run, "--report", "results/report.html")
    assert out.returncode == 0, out.stderr[-3000:]
    check_report(workflow_run, tables=[])
