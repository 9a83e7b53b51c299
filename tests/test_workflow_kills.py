"""Issue 16: a workflow killed during training, then rerun, ends as if it had never stopped.

The real Snakemake trains one tiny run for three epochs (tiny config, one run's metrics as the
target) once without interruption; then the run's folder is removed and the same target is
started again and killed — the whole process group (Ctrl-C's SIGINT is gentler than this:
SIGKILL of Snakemake and the training job at once), or Snakemake alone (the training job goes
on as an orphan) — as soon as the first epoch's resumable state is on disk, i.e. inside the
second epoch. A plain rerun must finish, and its best checkpoint, history and test metrics must
equal the uninterrupted run's: Snakemake deleted the incomplete `checkpoint_best.pt`, and
`icsa train` resumed from `state/checkpoint_last.pt`, which carries the best epoch's weights.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.workflow import env, scratch_workdir, snakemake, snakemake_command

pytestmark = pytest.mark.slow

RUN = "pitts30k-vgg16-icsa-b5-s0"
TARGET = f"results/metrics/{RUN}/pitts30k-test.json"
CONFIG = "config/tiny.yaml epochs.yaml"


def _results(workdir: Path) -> dict:
    run = workdir / "results" / "runs" / RUN
    best = torch.load(run / "checkpoint_best.pt", weights_only=True)
    history = json.loads((run / "history.json").read_text())
    metrics = json.loads((workdir / TARGET).read_text())
    return {"best": best, "history": history, "recalls": metrics["recalls"]}


def _assert_same(got: dict, want: dict) -> None:
    assert got["best"]["epoch"] == want["best"]["epoch"]
    for key, value in want["best"]["model_state"].items():
        assert torch.equal(value, got["best"]["model_state"][key]), key
    strip = "_s"  # train_s, val_s, cache_refresh_s: wall-clock times differ between runs
    rows = [[{k: v for k, v in r.items() if not k.endswith(strip)} for r in h]
            for h in (got["history"], want["history"])]  # fmt: skip
    assert rows[0] == rows[1]
    assert got["recalls"] == want["recalls"]


def _start_and_kill(workdir: Path, whole_group: bool) -> None:
    """Start the target, wait for epoch 1's resumable state, then SIGKILL."""
    state = workdir / "results" / "runs" / RUN / "state" / "checkpoint_last.pt"
    log = (workdir / "killed.log").open("w")
    proc = subprocess.Popen(
        [*snakemake_command(workdir, config=CONFIG), "--cores", "1", "--", TARGET],
        cwd=workdir, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 900
    while not state.exists():
        assert proc.poll() is None, (workdir / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no resumable state after 15 minutes"
        time.sleep(0.2)
    if whole_group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGKILL)  # the training job lives on, an orphan
    proc.wait(timeout=60)
    if not whole_group:
        # Let the orphan finish (or fail) before the rerun: two trainers must not share a folder.
        deadline = time.monotonic() + 900
        while _group_alive(proc.pid):
            assert time.monotonic() < deadline
            time.sleep(0.5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and the scratch workflow (data, centroids) it leaves."""
    workdir = scratch_workdir(tmp_path_factory.mktemp("kills"))
    (workdir / "epochs.yaml").write_text("train: {epochs: 3}\n")
    result = snakemake(workdir, "--cores", "2", "--", TARGET, config=CONFIG, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:]
    return workdir, _results(workdir)


@pytest.mark.parametrize("whole_group", [True, False], ids=["group", "snakemake-only"])
def test_a_killed_training_reruns_to_the_uninterrupted_result(reference, whole_group):
    workdir, want = reference
    for folder in ("runs", "descriptors", "metrics"):  # this run's, from scratch again
        shutil.rmtree(workdir / "results" / folder / RUN)
    _start_and_kill(workdir, whole_group)
    # A killed Snakemake leaves its lock and marks the job's outputs incomplete; what a user
    # does then is what Snakemake's own messages say: --unlock, then rerun with
    # --rerun-incomplete (profiles/default sets it).
    unlocked = snakemake(workdir, "--unlock", config=CONFIG)
    assert unlocked.returncode == 0, unlocked.stdout[-3000:]
    result = snakemake(workdir, "--cores", "1", "--rerun-incomplete", "--", TARGET,
                       config=CONFIG, timeout=1800)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    log = (workdir / "results" / "logs" / "train" / f"{RUN}.log").read_text()
    if whole_group:
        assert "resuming" in log, log[-3000:]
    _assert_same(_results(workdir), want)
