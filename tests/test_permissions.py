"""Outputs get the mode a plain open() would give under the umask, not mkstemp's 0600.

Colleagues on a shared project folder must be able to read tables, checkpoints and figures.
Each test writes through the real writer under two umasks, so a writer that kept mkstemp's
0600 (or forced a fixed mode) fails.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_table(out: Path) -> Path:
    from icsa.tables.render import write_outputs

    df = pd.DataFrame([{"network": "VGG16", "block": "block5", "R@1": 31.0}])
    write_outputs(df, "### Table\n", out / "t.csv", out / "t.md", out / "t.json")
    return out / "t.csv"


def _write_checkpoint(out: Path) -> Path:
    import torch

    from icsa.train.checkpoint import save_checkpoint

    save_checkpoint(out / "checkpoint_best.pt", {"epoch": 1, "w": torch.ones(3)})
    return out / "checkpoint_best.pt"


def _write_figure(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from icsa.analysis.plotting import save_figure

    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    save_figure(fig, out / "fig.png")
    return out / "fig.png"


WRITERS = [_write_table, _write_checkpoint, _write_figure]


@pytest.mark.parametrize("writer", WRITERS, ids=["table", "checkpoint", "figure"])
def test_output_mode_follows_umask(
    tmp_path: Path, umask: int, writer: Callable[[Path], Path]
) -> None:
    path = writer(tmp_path)
    reference = tmp_path / "plain.txt"
    with open(reference, "w") as fh:  # what a normal open() gives under this umask
        fh.write("x")
    assert _mode(path) == _mode(reference) == 0o666 & ~umask
    # No temporary is left beside the output.
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_table_outputs_all_readable_under_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        _write_table(tmp_path)
    finally:
        os.umask(old)
    for name in ("t.csv", "t.md", "t.json"):
        assert _mode(tmp_path / name) == 0o644, name
