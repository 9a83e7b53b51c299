"""Table 2 measurement: sizes, row format, the folded row, and the `icsa efficiency` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from icsa.analysis.efficiency import measure_modules, summarise
from icsa.cli import main
from icsa.errors import InputError


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


PAPER_KB = {"ia": 2400.0, "icsa": 6.7, "ch": 2.0, "se": 128.0, "cbam": 256.4}


def test_rows_have_paper_sizes_and_times() -> None:
    names = ["none", "ia", "icsa", "ch", "sp", "se", "cbam", "icsa-folded"]
    rows = measure_modules(names, repeats=3)
    assert [r["module"] for r in rows] == names
    by_name = {r["module"]: r for r in rows}
    for name, kb in PAPER_KB.items():
        assert round(by_name[name]["size_kb"], 1) == kb
        assert by_name[name]["size_kb"] == pytest.approx(by_name[name]["params"] * 4 / 1024)
    assert by_name["icsa"]["params"] == 512 + 30 * 40
    assert by_name["icsa-folded"]["params"] == 0 and by_name["icsa-folded"]["size_kb"] == 0.0
    for row in rows:
        assert row["time_ms_median"] > 0 and row["time_ms_iqr"] >= 0
        assert (row["batch_size"], row["device"], row["repeats"]) == (1, "cpu", 3)
    cpu_rows = measure_modules(["ia"], batch_size=2, repeats=2, clock="cpu")
    assert cpu_rows[0]["clock"] == "cpu" and cpu_rows[0]["time_ms_median"] > 0


def test_summarise_median_and_iqr() -> None:
    assert summarise([1.0, 2.0, 3.0, 4.0, 100.0]) == (3.0, 2.0)


def test_unknown_module_is_input_error() -> None:
    with pytest.raises(InputError, match="icsa-folded"):
        measure_modules(["nope"], repeats=1)
    with pytest.raises(InputError, match="clock"):
        measure_modules(["ia"], repeats=1, clock="gpu")


def test_cli_writes_json_atomically(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "efficiency.json"
    argv = ["efficiency", "--channels", "64", "--height", "6", "--width", "8"]
    argv += ["--repeats", "2", "--threads", "1", "--modules", "icsa,se,icsa-folded"]
    assert main([*argv, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["module"] for r in data["rows"]] == ["icsa", "se", "icsa-folded"]
    assert data["rows"][0]["params"] == 64 + 48
    assert data["metadata"]["threads"] == 1 and data["metadata"]["torch"] == torch.__version__
    assert "cpu" in data["metadata"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["efficiency.json"]
    bad = tmp_path / "bad.json"
    assert main(["efficiency", "--modules", "nope", "--out", str(bad)]) == 2
    assert not bad.exists()
