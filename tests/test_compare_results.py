"""benchmarks/compare_results.py: a refactor's before/after check finds every changed number."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from icsa import layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from compare_results import compare  # noqa: E402

RUN, EVALSET = "pitts30k-vgg16-icsa-b5-s0", "pitts30k-test"


def results_folder(root: Path) -> Path:
    """A working folder with one run's descriptors, metrics and per-query ranks, and two tables."""
    rng = np.random.default_rng(0)
    for side in ("db", "q"):
        path = root / layout.descriptors_file(RUN, EVALSET, side)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.standard_normal((4, 8)).astype(np.float32))
    perquery = root / layout.perquery_file(RUN, EVALSET)
    perquery.parent.mkdir(parents=True, exist_ok=True)
    np.savez(perquery, first_hit_rank=np.array([0, 3, 1]), indices=np.arange(6).reshape(3, 2))
    metrics = {"recalls": {"1": 0.5}, "found": {"1": 2}, "num_db": 4, "num_q": 3,
               "timings": {"total_s": 0.1}}  # fmt: skip
    (root / layout.metrics_file(RUN, EVALSET)).write_text(json.dumps(metrics))
    (root / layout.table_file("table5", "csv")).write_text("network,R@1\nVGG16,50.0\n")
    (root / layout.table_file("table2", "csv")).write_text("module,time_ms\nICSA,1.0\n")
    return root


def test_identical_folders_compare_equal_and_timings_are_ignored(tmp_path):
    old, new = results_folder(tmp_path / "old"), results_folder(tmp_path / "new")
    metrics = new / layout.metrics_file(RUN, EVALSET)
    metrics.write_text(metrics.read_text().replace("0.1", "0.2"))  # a timing
    table2 = new / layout.table_file("table2", "csv")
    table2.write_text("module,time_ms\nICSA,2.0\n")  # an efficiency table's time
    assert compare(old, new) == (5, [])  # 2 descriptors, ranks, metrics, table5


def test_every_kind_of_change_is_reported(tmp_path):
    old = results_folder(tmp_path / "old")
    changes = {
        layout.descriptors_file(RUN, EVALSET, "q"): lambda p: np.save(p, np.load(p) * 1.0000001),
        layout.perquery_file(RUN, EVALSET): lambda p: np.savez(
            p, first_hit_rank=np.array([0, 3, 2]), indices=np.arange(6).reshape(3, 2)),
        layout.metrics_file(RUN, EVALSET): lambda p: p.write_text(
            p.read_text().replace('"found": {"1": 2}', '"found": {"1": 1}')),
        layout.table_file("table5", "csv"): lambda p: p.write_text("network,R@1\nVGG16,50.1\n"),
    }  # fmt: skip
    for name, change in changes.items():
        new = tmp_path / f"new-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(old, new)
        change(new / name)
        compared, differences = compare(old, new)
        assert len(differences) == 1 and name in differences[0], (name, differences)
    new = tmp_path / "missing"
    shutil.copytree(old, new)
    (new / layout.perquery_file(RUN, EVALSET)).unlink()
    assert compare(old, new)[1] == [f"only in one folder: {layout.perquery_file(RUN, EVALSET)}"]
