"""benchmarks/gpu_check.py in its CPU-only dry mode: the prepared GPU check runs end to end.

On a GPU machine the same script (without --dry) writes benchmarks/results/gpu.md; here it must
at least train with and without the prefix cache through the pipeline's code, extract, search,
and write both records.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

from icsa.fast_inference import training_autocast

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_writes_its_record(tmp_path):
    check = _load()
    out = tmp_path / "gpu.md"
    assert check.main(["--dry", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    cached, plain = record["train"]
    steps = check.DRY.train_places // 4  # one step per 4 queries, every query trainable
    assert (cached["prefix_cache"], plain["prefix_cache"]) == (True, False)
    assert cached["steps"] == plain["steps"] == steps
    # the same first step on the same data: cached float16 prefixes vs recomputed float32
    assert abs(cached["loss"] - plain["loss"]) < 1e-2 and 0 < plain["loss"] < 1
    agree = record["extract"]["agree_float32"]
    assert agree["max_abs_diff"] == 0.0  # CPU against CPU: the same arithmetic
    assert record["search"]["cpu_s_per_1000_queries"] > 0
    text = out.read_text()
    assert "| True | False | None |" in text and "Exact search: 100 × 300 × 512" in text


def test_training_autocast_is_cuda_only():
    assert training_autocast(torch.device("cpu"), amp=True) is None
    assert training_autocast(torch.device("cuda"), amp=False) is None
