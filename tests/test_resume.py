"""Kill-and-resume: a run killed mid-epoch and restarted ends bit-identical to a straight run."""

from __future__ import annotations

import json

import pytest
import torch

from icsa.train.loop import TripletTrainer
from tests.test_train import QUICK, _run, tiny  # noqa: F401 - tiny is a fixture

torch.set_num_threads(1)
TIMINGS = ("train_s", "cache_refresh_s", "val_s")


def _history(run_dir):
    rows = json.loads((run_dir / "history.json").read_text())
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _metric_rows(run_dir):
    # dvclive's per-metric table: header + one line per logged epoch
    return (run_dir / "dvclive" / "plots" / "metrics" / "val" / "recall@1.tsv").read_text()


def test_killed_run_resumes_to_identical_weights_and_metrics(tiny, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # dvclive writes only into the run folders
    settings = {**QUICK, "epochs": 2}
    _run(tiny, tmp_path / "straight", settings, enable_dvclive=True)

    # Kill the second run inside epoch 2, after two optimiser steps have changed the weights
    # in memory (as SIGKILL would: nothing of epoch 2 reaches the disk).
    original, calls = TripletTrainer._loss, []

    def dying(self, triplets):
        if self.epoch == 1:
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
        return original(self, triplets)

    monkeypatch.setattr(TripletTrainer, "_loss", dying)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, resumed, settings, enable_dvclive=True)
    assert torch.load(resumed / "checkpoint_last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(TripletTrainer, "_loss", original)

    summary = _run(tiny, resumed, settings, enable_dvclive=True)  # the same command again
    assert summary["epochs"] == 2
    assert _history(resumed) == _history(tmp_path / "straight")
    a = torch.load(tmp_path / "straight" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    assert torch.equal(a["mining_state"]["neg_cache"], b["mining_state"]["neg_cache"])
    for key, state in a["optimizer_state"]["state"].items():
        assert torch.equal(
            state["momentum_buffer"], b["optimizer_state"]["state"][key]["momentum_buffer"]
        )
    assert a["scheduler_state"] == b["scheduler_state"]
    # dvclive holds each epoch once (replayed from the checkpoint, not appended twice)
    assert _metric_rows(resumed).count("\n") == 4  # header + epochs 0, 1, 2
    assert [r.split("\t")[1:] for r in _metric_rows(resumed).splitlines()[1:]] == [
        r.split("\t")[1:] for r in _metric_rows(tmp_path / "straight").splitlines()[1:]
    ]

    # Re-running a finished run changes nothing.
    _run(tiny, resumed, settings)
    c = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    assert c["epoch"] == 2 and all(
        torch.equal(v, c["model_state"][k]) for k, v in b["model_state"].items()
    )
