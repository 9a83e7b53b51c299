"""Kill-and-resume: a run killed mid-epoch and restarted ends bit-identical to a straight run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from icsa.errors import InputError
from icsa.train import loop as loop_module
from icsa.train.loop import TripletTrainer
from tests.helpers.city import QUICK, killed_in_epoch_2, run_training

torch.set_num_threads(1)
TIMINGS = ("train_s", "cache_refresh_s", "val_s")


def _history(run_dir):
    rows = json.loads((run_dir / "history.json").read_text())
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _metric_rows(run_dir):
    # dvclive's per-metric table: header + one line per logged epoch
    return (run_dir / "dvclive" / "plots" / "metrics" / "val" / "recall@1.tsv").read_text()


def test_killed_run_resumes_to_identical_weights_and_metrics(tiny_city, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive writes only into the run folders
    settings = {**QUICK, "epochs": 2}
    run_training(tiny_city, tmp_path / "straight", settings, enable_dvclive=True)

    # Kill the second run inside epoch 2, after two optimiser steps have changed the weights
    # in memory (as SIGKILL would: nothing of epoch 2 reaches the disk).
    resumed = tmp_path / "resumed"
    with killed_in_epoch_2(), pytest.raises(KeyboardInterrupt):
        run_training(tiny_city, resumed, settings, enable_dvclive=True)
    assert torch.load(resumed / "state" / "checkpoint_last.pt", weights_only=True)["epoch"] == 1

    summary = run_training(
        tiny_city, resumed, settings, enable_dvclive=True
    )  # the same command again
    assert summary["epochs"] == 2
    assert _history(resumed) == _history(tmp_path / "straight")
    a = torch.load(tmp_path / "straight" / "state" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(resumed / "state" / "checkpoint_last.pt", weights_only=True)
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
    run_training(tiny_city, resumed, settings)
    c = torch.load(resumed / "state" / "checkpoint_last.pt", weights_only=True)
    assert c["epoch"] == 2 and all(
        torch.equal(v, c["model_state"][k]) for k, v in b["model_state"].items()
    )


def _same_checkpoint(a_path, b_path) -> None:
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    untimed = [[{k: v for k, v in row.items() if k not in TIMINGS} for row in c["history"]]
               for c in (a, b)]  # fmt: skip
    assert a["epoch"] == b["epoch"] and untimed[0] == untimed[1]
    assert a["model_state"].keys() == b["model_state"].keys()
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key


def test_best_checkpoint_survives_reruns_and_interruptions(tiny_city, tmp_path, monkeypatch):
    """Issue 16: Snakemake deletes checkpoint_best.pt before it reruns a job; a run resumed
    past its best epoch used never to write it again. Now it is rewritten from the resumable
    state, equal to an uninterrupted run's, however the run was interrupted."""
    settings = {**QUICK, "epochs": 3}
    straight = tmp_path / "straight"
    run_training(tiny_city, straight, settings)
    best = torch.load(straight / "checkpoint_best.pt", weights_only=True)
    last = torch.load(straight / "state" / "checkpoint_last.pt", weights_only=True)
    assert 1 <= best["epoch"] <= 3 and last["best_checkpoint"]["epoch"] == best["epoch"]
    assert "best_checkpoint" not in best  # the declared output is the plain checkpoint

    # 1. A finished run rerun (--forcerun, a changed rule): the best file is deleted first.
    rerun = tmp_path / "rerun"
    shutil.copytree(straight, rerun)
    (rerun / "checkpoint_best.pt").unlink()
    run_training(tiny_city, rerun, settings)
    _same_checkpoint(straight / "checkpoint_best.pt", rerun / "checkpoint_best.pt")

    # 2. Killed inside the last epoch, after the best epoch: the rerun deletes the best file.
    # 3. Killed while saving: after the best file, before checkpoint_last of that epoch.
    original_loss, original_save = TripletTrainer._loss, loop_module.save_verified
    for case in ("during the last epoch", "between the saves of an epoch"):
        run_dir, calls = tmp_path / case.replace(" ", "_"), []

        def dying_loss(self, triplets, calls=calls):
            if self.state.epoch == 2:
                calls.append(1)
                if len(calls) == 2:
                    raise KeyboardInterrupt
            return original_loss(self, triplets)

        def dying_save(path, checkpoint):
            if path.name == "checkpoint_last.pt" and checkpoint["epoch"] == best["epoch"]:
                raise KeyboardInterrupt
            return original_save(path, checkpoint)

        if case == "during the last epoch":
            monkeypatch.setattr(TripletTrainer, "_loss", dying_loss)
        else:
            monkeypatch.setattr(loop_module, "save_verified", dying_save)
        with pytest.raises(KeyboardInterrupt):
            run_training(tiny_city, run_dir, settings)
        monkeypatch.setattr(TripletTrainer, "_loss", original_loss)
        monkeypatch.setattr(loop_module, "save_verified", original_save)
        (run_dir / "checkpoint_best.pt").unlink(missing_ok=True)  # as Snakemake does
        run_training(tiny_city, run_dir, settings)
        _same_checkpoint(straight / "checkpoint_best.pt", run_dir / "checkpoint_best.pt")
        _same_checkpoint(
            straight / "state" / "checkpoint_last.pt", run_dir / "state" / "checkpoint_last.pt"
        )
        assert not list(run_dir.rglob(".*tmp*")), case  # no temporary left beside them


def test_missing_best_with_an_old_resumable_state_is_a_clear_error(tiny_city, tmp_path):
    run_dir = tmp_path / "old"
    run_training(tiny_city, run_dir, QUICK)
    state = run_dir / "state"
    last = torch.load(state / "checkpoint_last.pt", weights_only=True)
    del last["best_checkpoint"]  # as written before the best epoch travelled with it
    torch.save(last, state / "checkpoint_last.pt")
    # ... and before the state kept its own copy of the best, and digest records.
    for old in ("checkpoint_best.pt", "checkpoint_best.pt.digest.json",
                "checkpoint_last.pt.digest.json"):  # fmt: skip
        (state / old).unlink()
    (run_dir / "checkpoint_best.pt").unlink()
    with pytest.raises(InputError, match="checkpoint_best.pt is missing.*delete the run folder"):
        run_training(tiny_city, run_dir, QUICK)
