"""Faults a careful user meets, run for real on the tiny city (issue 16): each asserts the error,
its message and the files left behind."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from icsa.train.loop import DIVERGENCE_FACTOR, DivergedError, NonFiniteLossError
from tests.helpers.city import QUICK, make_trainer, run_training
from tests.helpers.services import unavailable
from tests.helpers.workflow import ROOT, env

torch.set_num_threads(1)


def test_a_sound_run_stays_far_inside_the_divergence_bound(tiny_city, tmp_path):
    trainer = make_trainer(tiny_city, tmp_path / "sound", **{**QUICK, "epochs": 3})
    trainer.fit()
    ratio = trainer.state.weight_norm() / trainer.state.initial_weight_norm
    assert 0.5 < ratio < 2.0 < DIVERGENCE_FACTOR  # weight decay holds the norm near its start


@pytest.mark.parametrize(
    "lr, error", [(1.0e4, DivergedError), (1.0e6, NonFiniteLossError)], ids=["explodes", "nan"]
)
def test_a_huge_learning_rate_stops_as_diverged_and_is_never_best(tiny_city, tmp_path, lr, error):
    # lr 1e4: finite weights 3e7× their start (the 7.7e13 at lr 1e6 on the default
    # config); lr 1e6 on the tiny city: NaN loss within the first epoch. Either way the job fails
    # with the reason, and no epoch of the diverged model is saved.
    run_dir = tmp_path / "huge-lr"
    with pytest.raises(error, match="diverged") as err:
        run_training(tiny_city, run_dir, {**QUICK, "epochs": 3, "lr": lr})
    if error is DivergedError:
        assert f"bound: {DIVERGENCE_FACTOR:g}×" in str(err.value)
        assert "lower train.lr (10000)" in str(err.value) and "epoch 1" in str(err.value)
    assert not (run_dir / "checkpoint_best.pt").exists()
    # Only the untrained state (epoch 0, validated before training) may have been saved.
    last = run_dir / "state" / "checkpoint_last.pt"
    assert not last.exists() or torch.load(last, weights_only=True)["epoch"] == 0


def test_a_killed_writers_temporary_is_swept_by_the_next_write(tmp_path):
    from icsa.io import TEMP_MARK, atomic_path, stale_temporaries, write_json

    target, other = tmp_path / "table5.json", tmp_path / "table6.json"
    # What kill -9 inside atomic_path leaves: a temporary named after its target.
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        os.link(tmp, tmp_path / f".{target.name}.killed01{TEMP_MARK}.json")
        os.link(tmp, tmp_path / f".{other.name}.killed02{TEMP_MARK}.json")
        raise KeyboardInterrupt
    assert not tmp.exists()  # an exception removes the writer's own temporary
    assert [p.name for p in stale_temporaries(target)] == [f".table5.json.killed01{TEMP_MARK}.json"]
    write_json(target, {"R@1": 1.0})
    assert stale_temporaries(target) == [] and target.is_file()
    assert len(stale_temporaries(other)) == 1  # another target's temporary is not this writer's
    # git and DVC ignore the pattern.
    ignored = subprocess.run(["git", "check-ignore", "-q", f"results/.t.csv.x{TEMP_MARK}.csv"],
                             cwd=ROOT)  # fmt: skip
    assert ignored.returncode == 0
    assert f".*{TEMP_MARK}*" in (ROOT / ".dvcignore").read_text()


def test_a_live_writers_temporary_is_left_alone_and_a_dead_ones_swept(tmp_path):
    """Two processes writing one target: the pid in a temporary's name says whether its writer
    still runs (a second `icsa train` on a run folder used to sweep the first one's
    temporary from under it)."""
    from icsa.io import TEMP_MARK, stale_temporaries, write_json

    target = tmp_path / "history.json"
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        live_tmp = tmp_path / f".{target.name}.{live.pid}-abcdefgh{TEMP_MARK}.json"
        dead_tmp = tmp_path / f".{target.name}.{dead.pid}-abcdefgh{TEMP_MARK}.json"
        for path in (live_tmp, dead_tmp):
            path.write_text("half")
        assert stale_temporaries(target) == [dead_tmp]
        write_json(target, [])
        assert live_tmp.exists() and not dead_tmp.exists()
    finally:
        live.kill()
        live.wait()
    assert stale_temporaries(target) == [live_tmp]  # its writer is gone now


def test_a_mapped_write_that_cannot_fit_fails_with_the_path_and_the_bytes(tmp_path):
    import shutil

    from icsa.errors import InputError
    from icsa.io import require_free_space

    path = tmp_path / "pitts30k-test-db.npy"
    # Far beyond the free space: the free space itself moves on a shared disk.
    needed = 2 * shutil.disk_usage(tmp_path).free + 2**40
    require_free_space(path, 1024)  # fits: no error
    with pytest.raises(InputError, match=rf"{path}: needs {needed:,} bytes, .* free"):
        require_free_space(path, needed)
    assert not path.exists()


def test_an_undecodable_image_is_named_wherever_it_is_read(tmp_path):
    from PIL import Image

    from icsa.data.datasets import load_image
    from icsa.errors import InputError

    good = tmp_path / "000" / "good.jpg"
    good.parent.mkdir()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(good, quality=90)
    truncated = tmp_path / "000" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    assert load_image(good, (48, 64)).shape == (3, 48, 64)
    for bad in (truncated, tmp_path / "missing.jpg"):
        with pytest.raises(InputError, match=rf"{bad}: cannot decode the image"):
            load_image(bad, (48, 64))


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 KiB file system (tmpfs) at tmp_path/disk; skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        unavailable("tmpfs", f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_extraction_onto_a_full_disk_fails_with_the_path_and_the_bytes(small_disk, tmp_path):
    """Issue 16: a full disk during extraction used to end in SIGBUS (exit 135), leaving the
    temporary and the disk full. Real `icsa extract`, real small file system."""
    from icsa.models import build_model
    from icsa.train.checkpoint import save_checkpoint
    from tests.helpers.datasets import make_dataset

    root = tmp_path / "pitts"
    make_dataset(root, "pitts30k", {"test": (12, 4)}, hw=(32, 32))
    model = build_model("vgg16", "icsa", num_clusters=4, image_size=(32, 32))
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, {"model_state": model.state_dict(),
                                 "model_config": model.config, "epoch": 1})  # fmt: skip
    out = small_disk / "pitts30k-test-db.npy"  # 12 × 2048 float32 = 96 KiB > 64 KiB
    result = subprocess.run(
        ["icsa", "extract", "--checkpoint", str(checkpoint), "--root", str(root),
         "--dataset", "pitts30k", "--split", "test", "--out-db", str(out), "--workers", "0"],
        env=env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{out.name}" in result.stderr and "needs 98,304 bytes" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(small_disk.iterdir()) == []  # no temporary left: the disk is as free as before


def test_reserved_space_is_allocated_so_a_mapped_write_cannot_run_out(small_disk):
    """`reserve_space` allocates the blocks (not a sparse file), so the mapped writes that follow
    need none; beyond the disk's size it refuses with the path and the bytes."""
    import numpy as np

    from icsa.errors import InputError
    from icsa.io import reserve_space

    path = small_disk / "fits.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(8, 1024))
    assert path.stat().st_blocks * 512 < path.stat().st_size  # sparse until reserved
    reserve_space(path, path.stat().st_size)
    assert path.stat().st_blocks * 512 >= path.stat().st_size
    array[:] = 1.0
    array.flush()
    del array
    big = small_disk / "too-big.npy"
    big.touch()
    with pytest.raises(InputError, match=rf"{big}: needs 1,048,576 bytes, .* free"):
        reserve_space(big, 2**20)
