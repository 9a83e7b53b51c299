"""What a kill -9 leaves behind is swept by the next run, and only what dead processes left."""

from __future__ import annotations

import subprocess

from icsa.data.synthetic import MANIFEST, CitySettings, generate

SMALL = CitySettings(image_height=48, image_width=64, train_db=8, train_q=4, val_db=8, val_q=4,
                     test_db=8, test_q=4, tokyo_train_db=8, tokyo_train_q=4, tokyo_val_db=8,
                     tokyo_val_q=4)  # fmt: skip


def test_synthetic_folders_of_killed_writers_are_swept_and_a_live_ones_kept(tmp_path):
    """Nothing lost, round two: `kill -9` during `icsa prepare synthetic` left
    `.<name>.tmp-<pid>` folders that later runs never swept."""
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()  # its pid is free now
    live = subprocess.Popen(["sleep", "60"])  # a writer still at work
    try:
        stale = [tmp_path / f".city.tmp-{dead.pid}", tmp_path / f".city.old-{dead.pid}"]
        kept = [tmp_path / f".city.tmp-{live.pid}", tmp_path / f".town.tmp-{dead.pid}",
                tmp_path / ".city.tmp-x1"]  # fmt: skip
        for folder in (*stale, *kept):
            (folder / "pitts30k").mkdir(parents=True)
            (folder / "pitts30k" / "half.jpg").write_bytes(b"\xff\xd8")
        generate(tmp_path / "city", 0, SMALL, workers=1, progress=False)
        assert [p for p in stale if p.exists()] == []
        assert [p for p in kept if not p.exists()] == []  # a live writer's, another city's
        assert (tmp_path / "city" / MANIFEST).is_file()
    finally:
        live.kill()
        live.wait()
