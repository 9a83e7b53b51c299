"""The paper's configuration rehearsed end to end at 480×640 (config/rehearsal.yaml): CI's slice.

`make rehearse` runs config/pittsburgh.yaml with the overlay config/rehearsal.yaml (only data,
city size, device, epochs, weights and the step's chunking — the gradient cache that fits the
block-1 step in 24 GB — differ) to every table. CI runs a slice of it that still
goes through every step of the chain at the paper's image size, K = 64 and the NetVLAD batch
shape — render, check, k-means, train, extract, evaluate (Tokyo 24/7's panorama rule), table —
on a smaller city and for table8's plain VGG16 row only, plus Table 2 (the efficiency rule at
512×30×40): about 3 minutes on two cores. The slice overlay restates nothing the rehearsal does
not change (it is merged over both files).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from tests.helpers.workflow import job_counts, scratch_workdir, snakemake

pytestmark = pytest.mark.slow
CONFIG = "config/pittsburgh.yaml config/rehearsal.yaml slice.yaml"
SLICE = """\
synthetic:
  settings: {train_db: 32, train_q: 4, val_db: 12, val_q: 4, test_db: 12, test_q: 4,
             tokyo_train_db: 4, tokyo_train_q: 2, tokyo_val_db: 4, tokyo_val_q: 2,
             tokyo247_db: 24, tokyo247_q: 4}
tables: {table8: {attentions: [none]}}
"""


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    work = scratch_workdir(tmp_path_factory.mktemp("rehearsal"))
    (work / "slice.yaml").write_text(SLICE)
    done = snakemake(work, "--cores", "2", "results/table8.csv", "results/table2.csv",
                     config=CONFIG, timeout=3600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:]
    return work


def test_the_paper_config_plans_every_table_on_the_synthetic_city(tmp_path) -> None:
    work = scratch_workdir(tmp_path)
    done = snakemake(
        work, "-n", "--cores", "2", config="config/pittsburgh.yaml config/rehearsal.yaml"
    )
    assert done.returncode == 0, done.stdout[-3000:]
    counts = job_counts(done.stdout)
    # Table 9 adds 8 trainings (MixVPR and BoQ under four modules); its others are Table 7's.
    assert counts["table"] == 9 and counts["train"] == 33 and counts["check_dataset"] == 3


def test_slice_runs_at_the_paper_scale(rehearsal) -> None:
    ckpt = torch.load(rehearsal / "results/runs/pitts30k-vgg16-none-b5-s0/checkpoint_best.pt",
                      weights_only=True)  # fmt: skip
    assert ckpt["model_config"]["image_size"] in ([480, 640], (480, 640))
    assert ckpt["model_state"]["netvlad.centroids"].shape == (64, 512)  # K = 64 over conv5_3
    assert ckpt["train_settings"]["step_chunk"] == 12  # its 48 inputs went through 12 at a time
    history = json.loads((rehearsal / "results/runs/pitts30k-vgg16-none-b5-s0/history.json")
                         .read_text())  # fmt: skip
    trained = [row for row in history if row["epoch"] == 1]
    assert trained and trained[0]["steps"] >= 1 and trained[0]["triplets"] >= 1
    metrics = json.loads((rehearsal / "results/metrics/pitts30k-vgg16-none-b5-s0/"
                          "tokyo247-test.json").read_text())  # fmt: skip
    assert metrics["num_q"] == 4 and metrics["num_db"] == 24  # two panoramas
    t8 = pd.read_csv(rehearsal / "results/table8.csv")
    assert list(t8["network"]) == ["VGG16"] and t8["R@1"].between(0, 100).all()
    # The synthetic role is never called by the real dataset's name.
    assert "synthetic Tokyo 24/7-role city, test" in (rehearsal / "results/table8.md").read_text()
    t2 = pd.read_csv(rehearsal / "results/table2.csv")
    assert "ICSA" in set(t2["module"])
