"""Table 2: parameter size and forward time of each attention module at C×H×W.

Sizes are exact (float32, kB = 1024 bytes). Times are the median (and interquartile range) of
``repeats`` single forward calls after a warm-up, on one device and thread setting, so rows
of one run are comparable as ratios; absolute numbers depend on the machine. The row
``icsa-folded`` is ICSA after :func:`icsa.models.fold_attention`: no module is left at
inference (the channel weights live in the last conv), so it is timed as the identity and has
0 parameters.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from icsa.errors import InputError
from icsa.models.attention import ATTENTIONS, build_attention, parameter_size_kb
from icsa.registry import FOLDED
from icsa.step_settings import EfficiencySettings

# The defaults of the workflow's `efficiency:` section and `icsa efficiency` (icsa.step_settings).
DEFAULTS = EfficiencySettings()


def default_modules() -> tuple[str, ...]:
    """Every registered module, then ICSA folded."""
    return (*ATTENTIONS, FOLDED)


def _build(name: str, channels: int, height: int, width: int) -> nn.Module:
    if name == FOLDED:
        return nn.Identity()  # the folded model has no attention module left
    if name not in ATTENTIONS:
        raise InputError(
            f"efficiency module={name!r}: expected one of {', '.join(default_modules())}"
        )
    return build_attention(name, channels, height, width)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_forward(
    module: nn.Module, x: torch.Tensor, repeats: int, warmup: int = 3, clock: str = "wall"
) -> list[float]:
    """Times in ms of ``repeats`` calls ``module(x)`` (inference mode, synchronised).

    ``clock="cpu"`` counts this process's CPU time instead of wall time: on a CPU shared with
    other jobs it measures the work done, not the wait (use it with one torch thread).
    """
    if clock not in CLOCKS or (clock == "cpu" and x.device.type != "cpu"):
        raise InputError(f"clock={clock!r}: expected 'wall', or 'cpu' for a CPU device")
    now = CLOCKS[clock]
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            _sync(x.device)
            start = now()
            module(x)
            _sync(x.device)
            if i >= warmup:
                times.append((now() - start) * 1000.0)
    return times


def summarise(times_ms: Sequence[float]) -> tuple[float, float]:
    """(median, interquartile range) of a list of times."""
    q25, q50, q75 = np.percentile(np.asarray(times_ms, dtype=np.float64), [25, 50, 75])
    return float(q50), float(q75 - q25)


def measure_modules(
    names: Sequence[str] | None = None,
    channels: int = DEFAULTS.channels,
    height: int = DEFAULTS.height,
    width: int = DEFAULTS.width,
    batch_size: int = DEFAULTS.batch_size,
    repeats: int = DEFAULTS.repeats,
    device: str = "cpu",
    clock: str = "wall",
) -> list[dict[str, Any]]:
    """One row per module: module, params, size_kb, time_ms_median, time_ms_iqr, batch_size,
    device, repeats, clock (the paper's Table 2 at 512×30×40 by default; every registered
    module and ICSA folded unless ``names`` are given)."""
    names = default_modules() if names is None else names
    if repeats < 1 or batch_size < 1:
        raise InputError(f"repeats={repeats}, batch_size={batch_size}: expected >= 1")
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, channels, height, width, generator=gen).to(dev)
    rows = []
    for name in names:
        module = _build(name, channels, height, width).to(dev).eval()
        median, iqr = summarise(time_forward(module, x, repeats, clock=clock))
        rows.append(
            {
                "module": name,
                "params": sum(p.numel() for p in module.parameters()),
                "size_kb": round(parameter_size_kb(module), 4),
                "time_ms_median": median,
                "time_ms_iqr": iqr,
                "batch_size": batch_size,
                "device": str(dev),
                "repeats": repeats,
                "clock": clock,
            }
        )
    return rows


def environment() -> dict[str, Any]:
    """What the times depend on: torch version, threads, CPU, CUDA device."""
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda_device": cuda,
        "python": platform.python_version(),
    }
