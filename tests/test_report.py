"""Figure rules (workflow/rules/figures.smk) on the tiny config, and the Snakemake HTML report.

The real workflow (workflow/Snakefile in a scratch directory with a copy of config/, as in
tests/helpers/workflow.py) runs only its figure rules (`--allowed-rules`), on what the upstream
rules would have left: a tiny evaluation set, real tiny checkpoints with histories, per-query
results and Tables 1-6, written by the test so that this file does not retrain anything (the
ICSA/IA checkpoints get a few SGD steps with weight decay, as in training). Then
`snakemake --report` must build and contain every table and figure with its caption.

The checks `check_figures(workdir)` and `check_report(workdir)` (tests/helpers/report.py) make
no assumption about sizes, so the end-to-end tiny run (tests/test_workflow_e2e.py) can apply
them to a fully trained workflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from icsa.models import build_model
from icsa.tables.html import write_table_html
from icsa.train.checkpoint import save_checkpoint
from tests.helpers.datasets import make_noise_test_split
from tests.helpers.report import check_figures, check_report
from tests.helpers.workflow import ROOT, scratch_workdir, snakemake

pytestmark = pytest.mark.slow  # a real Snakemake run: ~10 CLI jobs (each imports torch)

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


def figure_rules(workdir: Path, *options: str, target: str = "figures"):
    """Snakemake (tests/helpers/workflow.py) allowed to run the figure rules only."""
    return snakemake(workdir, *options, "--allowed-rules", *FIGURE_RULES, "--", target, timeout=600)


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
    root = work / "data" / "synthetic" / "pitts30k"  # config/tiny.yaml's root
    db = make_noise_test_split(root, num_db=10)
    db_utm, q_utm = db.db_utm, db.q_utm
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
    tables = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())["tables"]
    for n in (int(name.removeprefix("table")) for name in tables):  # every table of the config
        (work / "results" / f"table{n}.csv").write_text(f"network,R@1\nVGG16,{n}1.5\n")
        markdown = f"### Table {n}: T\n\n| network | R@1 |\n|---|---|\n| VGG16 | {n}1.5 |\n"
        (work / "results" / f"table{n}.md").write_text(markdown)
        write_table_html(markdown, work / "results" / f"table{n}.html")


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    work = scratch_workdir(tmp_path_factory.mktemp("wf"))
    _tiny_upstream(work)
    run = figure_rules(work, "--cores", "2")
    assert run.returncode == 0, run.stdout[-3000:]
    return work


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
    again = figure_rules(workflow_run, "--cores", "1", "-n")
    assert "Nothing to be done" in again.stdout


def test_report_contains_every_figure(workflow_run):
    # The report covers the DAG of its target: `figures` holds every figure.
    # (The table pages come from rule `table`, which this test does not run: the end-to-end
    # report test, tests/test_workflow_e2e.py, checks them.)
    out = figure_rules(workflow_run, "--report", "results/report.html")
    assert out.returncode == 0, out.stdout[-3000:]
    check_report(workflow_run, tables=[])
