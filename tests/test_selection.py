"""Checkpoint selection among trained epochs, and ICSA's spatial inertness in real training.

The public code only ever selects trained epochs; icsa logs epoch 0 (the untrained model) for
the curves but never makes it "best" (issue 11). Validation is scripted here so that the
untrained model is better than every trained epoch, the case where selecting epoch 0 would
silently report the initial model's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from icsa import layout
from icsa.evaluate.recall import RECALL_VALUES
from icsa.tables.compose import Statistics, build_run_table, read_selection
from icsa.tables.render import run_table_markdown
from icsa.train.checkpoint import load_checkpoint, load_model
from icsa.train.loop import TripletTrainer
from tests.helpers.city import QUICK, TINY, run_training


def _scripted_validation(monkeypatch, recalls):
    values = iter(recalls)

    def validate(self):
        r = next(values)
        return {f"recall@{n}": r for n in RECALL_VALUES}

    monkeypatch.setattr(TripletTrainer, "validate", validate)


def _write_metrics(results, run, m=20):
    ranks = np.where(np.arange(m) % 3 == 0, 0, -1)
    metrics_file = Path(layout.metrics_file(run, "pitts30k-test", results))
    metrics_file.parent.mkdir(parents=True)
    recalls = {str(n): float((ranks >= 0).mean()) for n in RECALL_VALUES}
    metrics = {"dataset": "pitts30k", "split": "test", "recalls": recalls, "time_rule": None}
    metrics_file.write_text(json.dumps(metrics))
    np.savez(layout.perquery_file(run, "pitts30k-test", results), first_hit_rank=ranks)


def test_untrained_model_better_than_all_trained_epochs_still_selects_a_trained_one(
    tiny_city, tmp_path, monkeypatch
):
    _scripted_validation(monkeypatch, [0.9, 0.5, 0.6, 0.4])  # epoch 0 best of all
    run = "pitts30k-vgg16-icsa-b5-s0"
    settings = {**QUICK, "epochs": 3, "validate_untrained": True, "patience": 10}
    out = run_training(tiny_city, Path(layout.run_dir(run, tmp_path)), settings)
    assert out["best_epoch"] == 2
    assert load_checkpoint(layout.checkpoint_best(run, tmp_path))["epoch"] == 2
    history = json.loads(Path(layout.history_file(run, "json", tmp_path)).read_text())
    assert [row["best_epoch"] for row in history] == [None, 1, 2, 2]
    assert read_selection(tmp_path, run) == {
        "best_epoch": 2, "trained_epochs": 3, "stopped_early": False, "untrained_better": True,
    }  # fmt: skip
    # The table row says where its numbers come from, and flags the run.
    _write_metrics(tmp_path, run)
    spec = {"table": "table5", "title": "t", "evalset": "pitts30k-test", "baseline": "none",
            "seeds": [0], "rows": [{"backbone": "vgg16", "attention": "icsa", "block": "5",
                                    "runs": [run]}]}  # fmt: skip
    df = build_run_table(spec, tmp_path, {}, Statistics(), selection=True)
    assert df.iloc[0]["best_epoch"] == "2" and df.iloc[0]["trained_epochs"] == "3"
    assert df.iloc[0]["selection_flags"] == "untrained-better"
    md = run_table_markdown(df, spec, Statistics())
    row = next(line for line in md.splitlines() if line.startswith("| VGG16+ICSA"))
    assert "2 / 3 ⚑untrained-better" in row


def test_first_epoch_best_and_early_stop_after_patience_epochs_are_flagged(
    tiny_city, tmp_path, monkeypatch
):
    _scripted_validation(monkeypatch, [0.1, 0.6, 0.5, 0.4, 0.3])
    run = Path(layout.run_dir("r", tmp_path))
    settings = {**QUICK, "epochs": 4, "validate_untrained": True, "patience": 2}
    out = run_training(tiny_city, run, settings)
    # MATLAB-style patience: stop after `patience` epochs without improvement (not patience+1).
    assert out["best_epoch"] == 1 and out["stopped_early"] and out["epochs"] == 3
    selection = read_selection(tmp_path, "r")
    assert selection["stopped_early"] and selection["best_epoch"] == 1
    assert not selection["untrained_better"]


def test_icsa_and_ch_train_identically_and_spatial_weights_follow_weight_decay(tiny_city, tmp_path):
    """Same start, same seed, several SGD steps: ICSA's spatial half gets zero gradient, so its
    descriptors equal CH's and its spatial weights follow the pure weight-decay recursion
    v <- m v + wd w, w <- w - lr v (with momentum m) from w = 1."""
    settings = {**QUICK, "epochs": 2, "validate_untrained": False}
    runs = {}
    for attention in ("icsa", "ch"):
        out = run_training(tiny_city, tmp_path / attention, settings, attention=attention)
        runs[attention] = out
    steps = sum(
        row["steps"] for row in json.loads((tmp_path / "icsa" / "history.json").read_text())
    )
    assert steps >= 6
    icsa = load_model(tmp_path / "icsa" / "state" / "checkpoint_last.pt")
    ch = load_model(tmp_path / "ch" / "state" / "checkpoint_last.pt")
    x = torch.rand(4, 3, *TINY)
    with torch.no_grad():
        np.testing.assert_allclose(icsa(x).numpy(), ch(x).numpy(), atol=1e-5)
    spatial = icsa.attention.spatial_weight.detach().numpy()
    assert np.ptp(spatial) < 1e-7, "every location shrinks alike"
    lr, m, wd = QUICK["lr"], 0.9, 1e-3  # TrainSettings' momentum and weight decay
    w, v = 1.0, 0.0
    for _ in range(steps):
        v = m * v + wd * w
        w = w - lr * v
    assert spatial.mean() == pytest.approx(w, abs=1e-6)
    assert w < 1.0 - 1e-5  # the decay is visible: the test can tell it from "unchanged"
    torch.testing.assert_close(icsa.attention.channel_weight, ch.attention.channel_weight,
                               atol=1e-5, rtol=0)  # fmt: skip
