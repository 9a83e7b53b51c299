"""A run folder owned by one process, and a resumable state that is verified, never a wedge.

Every file under a run's ``state/`` is damaged in turn (truncated, or bytes flipped behind an
intact header); the rerun, after Snakemake's deletion of the run's outputs, must end with the
uninterrupted run's best checkpoint and history, with a warning line naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from icsa.train.lock import run_folder_lock
from icsa.train.verified import CorruptStateError, digest_record, load_verified, save_verified
from tests.helpers.city import QUICK, run_spec, run_training
from tests.helpers.damage import flip, truncate, zero

torch.set_num_threads(1)
SETTINGS = {**QUICK, "epochs": 3}
TIMINGS = ("train_s", "cache_refresh_s", "val_s")


def _history(run_dir: Path) -> list[dict]:
    rows = json.loads((run_dir / "history.json").read_text())
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, weights_only=True)
    return {"epoch": checkpoint["epoch"], **checkpoint["model_state"]}


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa["epoch"] == wb["epoch"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa if k != "epoch")


@pytest.fixture(scope="module")
def straight(tiny_city, tmp_path_factory):
    """An uninterrupted run of 3 epochs."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    run_training(tiny_city, run_dir, SETTINGS)
    return run_dir


def test_the_state_holds_verified_files_and_the_published_best_is_a_link(straight):
    state = straight / "state"
    names = sorted(p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file())
    assert names == [
        "checkpoint_best.pt", "checkpoint_best.pt.digest.json", "checkpoint_last.pt",
        "checkpoint_last.pt.digest.json", "lock",
        *(f"prefix_cache/{n}.{ext}" for n in ("train-db", "train-q", "val-db", "val-q")
          for ext in ("json", "npy")),
        "run.json",
    ]  # fmt: skip
    assert (straight / "checkpoint_best.pt").samefile(state / "checkpoint_best.pt")
    best = torch.load(straight / "checkpoint_best.pt", weights_only=True)
    assert (
        json.loads(digest_record(state / "checkpoint_best.pt").read_text())["epoch"]
        == (best["epoch"])
    )
    record = json.loads((state / "prefix_cache" / "train-db.json").read_text())
    assert record["file_bytes"] == (state / "prefix_cache" / "train-db.npy").stat().st_size


def _state_files(run_dir: Path) -> list[str]:
    state = run_dir / "state"
    files = [p for p in state.rglob("*") if p.is_file() and p.name != "lock"]
    return sorted(p.relative_to(state).as_posix() for p in files)


CASES = [("truncate", truncate), ("flip", flip)]


@pytest.mark.parametrize("damage_name, damage", CASES, ids=[c[0] for c in CASES])
def test_every_damaged_state_file_ends_with_the_uninterrupted_result(
    straight, tiny_city, tmp_path, damage_name, damage, caplog
):
    """Each file of the state damaged in turn, the run's outputs deleted (as Snakemake does
    before a rerun), the run rerun: the straight run's best checkpoint and history, a warning
    naming the damaged file where it was found damaged, no error."""
    for name in _state_files(straight):
        run_dir = tmp_path / name.replace("/", "_")
        shutil.copytree(straight, run_dir)
        damage(run_dir / "state" / name)
        for output in ("checkpoint_best.pt", "history.json", "history.csv"):
            (run_dir / output).unlink()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            run_training(tiny_city, run_dir, SETTINGS)
        _same_weights(straight / "checkpoint_best.pt", run_dir / "checkpoint_best.pt")
        assert _history(run_dir) == _history(straight), name
        warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
        assert Path(name).name.split(".digest")[0] in warned or "run.json" in warned, (name, warned)
        if name.startswith("checkpoint_last"):  # the best epoch's state is resumed instead
            assert "from its best epoch's state" in warned, warned
        shutil.rmtree(run_dir)


def test_a_zeroed_prefix_cache_behind_its_header_is_rebuilt(straight, tiny_city, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    cache = run_dir / "state" / "prefix_cache" / "train-db.npy"
    zero(cache)
    assert (run_dir / "state" / "prefix_cache" / "train-db.json").is_file()
    for output in ("checkpoint_best.pt", "history.json"):
        (run_dir / output).unlink()
    with caplog.at_level(logging.WARNING):
        run_training(tiny_city, run_dir, SETTINGS)
    assert any("train-db.npy" in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert cache.read_bytes() == (straight / "state" / "prefix_cache" / "train-db.npy").read_bytes()


def test_a_bit_flip_in_the_last_checkpoint_is_refused_where_torch_loads_it(straight, tmp_path):
    """torch.load reads the damaged file without a word (a resumed run used to carry the
    flipped weight on); its digest record refuses it."""
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    last = run_dir / "state" / "checkpoint_last.pt"
    flip(last)
    with pytest.raises(CorruptStateError, match="checkpoint_last.pt: its bytes changed"):
        load_verified(last)
    assert torch.load(last, weights_only=True)  # torch alone loads it without a word


def test_a_writer_killed_between_record_and_rename_still_verifies(tmp_path):
    path = tmp_path / "checkpoint_last.pt"
    save_verified(path, {"model_state": {"w": torch.zeros(3)}, "model_config": {}, "epoch": 1})
    old = path.read_bytes()
    # The record of epoch 2 lists both digests until the new file has replaced the old one.
    original = os.replace

    def killed(src, dst):
        if Path(dst) == path:
            raise KeyboardInterrupt
        return original(src, dst)

    os.replace = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            save_verified(path, {"model_state": {"w": torch.ones(3)}, "model_config": {},
                                 "epoch": 2})  # fmt: skip
    finally:
        os.replace = original
    assert path.read_bytes() == old
    assert load_verified(path)["epoch"] == 1


def _train_command(tiny_city, run_dir: Path, *extra: str) -> list[str]:
    root, cents = tiny_city
    spec = run_spec({**QUICK, "epochs": 2}).to_dict()
    return [str(Path(sys.executable).with_name("icsa")), "train", "--spec", json.dumps(spec),
            "--root", str(root), "--centroids", str(cents), "--run-dir", str(run_dir),
            "--device", "cpu", "--threads", "1", "--no-dvclive", *extra]  # fmt: skip


def test_two_processes_on_one_run_folder_give_one_result_and_one_message(tiny_city, tmp_path):
    """Real processes: while one trains, a second stops at once with one line naming the
    holder; with --wait it waits and then finds the run finished (the same result)."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A holder that owns the folder for as long as the test needs, so the timing is not a race.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from icsa.train.lock import run_folder_lock\n"
         f"with run_folder_lock({str(run_dir)!r}):\n print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(_train_command(tiny_city, run_dir), capture_output=True,
                                text=True, env=env, timeout=300)  # fmt: skip
        assert second.returncode != 0
        error = [line for line in second.stderr.splitlines() if "error:" in line]
        assert len(error) == 1 and f"being trained by pid {holder.pid} " in error[0], second.stderr
        assert "Traceback" not in second.stderr
        assert not (run_dir / "checkpoint_best.pt").exists()  # it touched nothing
    finally:
        holder.kill()
        holder.wait()

    # Two real trainings started together, both with --wait (which one reaches the lock first is
    # up to the scheduler): one trains, the other waits and resumes the finished run.
    first = subprocess.Popen(_train_command(tiny_city, run_dir, "--wait"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    time.sleep(0.5)
    waiting = subprocess.run(_train_command(tiny_city, run_dir, "--wait"), capture_output=True,
                             text=True, env=env, timeout=300)  # fmt: skip
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and waiting.returncode == 0, (err, waiting.stderr)
    a, b = json.loads(out.splitlines()[-1]), json.loads(waiting.stdout.splitlines()[-1])
    assert a["best_recall@5"] == b["best_recall@5"] and a["epochs"] == b["epochs"] == 2
    assert [a["resumed"], b["resumed"]].count(True) == 1  # one trained, one found it done


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from icsa.train.lock import run_folder_lock\n"
         f"with run_folder_lock({str(tmp_path)!r}):\n print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with run_folder_lock(tmp_path):  # kill -9 left nothing locked
        pass


def test_resuming_from_the_best_epoch_keeps_its_checkpoint_apart_from_the_trained_state(
    straight, tmp_path
):
    """The optimiser's load_state_dict keeps the loaded momentum tensors and trains them in
    place; the best epoch's checkpoint carried on must not share them."""
    from icsa.train.run import _load_resumable

    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    truncate(run_dir / "state" / "checkpoint_last.pt")
    resumed = _load_resumable(run_dir, torch.device("cpu"))
    best = resumed["best_checkpoint"]
    assert best["epoch"] == resumed["epoch"]
    ours = [t for s in resumed["optimizer_state"]["state"].values() for t in s.values()
            if isinstance(t, torch.Tensor)]  # fmt: skip
    kept = [t for s in best["optimizer_state"]["state"].values() for t in s.values()
            if isinstance(t, torch.Tensor)]  # fmt: skip
    assert ours and len(ours) == len(kept)
    assert all(a.data_ptr() != b.data_ptr() and torch.equal(a, b) for a, b in zip(ours, kept))
