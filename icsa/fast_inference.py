"""The fast path of forward-only work (issue 14): bfloat16 autocast, and channels_last for
extraction, where the hardware has bfloat16 arithmetic.

Forward-only work — the frozen-prefix cache, the mining-cache refresh and validation during
training, extraction for evaluation — needs no gradients and tolerates bfloat16's 8-bit mantissa
(measured in benchmarks/results/fast_inference.md: the same retrieval, a several-fold speed-up
on a CPU with AMX). A setting chooses it: ``auto`` where the device has bfloat16 instructions
(CPU: ``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo; CUDA: ``torch.cuda.is_bf16_supported``)
and float32 elsewhere, ``on`` (an error where unsupported: emulated bfloat16 is slower than
float32), ``off`` (float32, bit-identical to earlier versions).

torch is imported inside the functions, so that the CLI and the recipe (TrainSettings) read
MODES without loading torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from icsa.errors import InputError

if TYPE_CHECKING:
    import torch

MODES = ("auto", "on", "off")
CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_has_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU flags list bfloat16 instructions (Linux; False where unknown)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    return any(flag in flags for flag in CPU_FLAGS)


def use_bf16(
    mode: str, device: torch.device, source: str = "fast_inference", cpuinfo: Path = CPUINFO
) -> bool:
    """Resolve ``mode`` (one of MODES) for ``device``; ``source`` names the setting in errors."""
    if mode not in MODES:
        raise InputError(f"{source} = {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off":
        return False
    import torch

    if device.type == "cuda":
        supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        supported = device.type == "cpu" and cpu_has_bf16(cpuinfo)
    if mode == "on" and not supported:
        raise InputError(
            f"{source} = 'on': {device.type} has no bfloat16 instructions (CPU: "
            f"{' or '.join(CPU_FLAGS)}); expected 'auto' or 'off' here"
        )
    return supported


def bf16_autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on ``device`` when ``enabled`` (a no-op context otherwise)."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def training_autocast(device: torch.device, amp: bool) -> str | None:
    """The autocast dtype of CUDA mixed-precision training (``amp``), or None (float32).

    bfloat16 where the GPU has it (Ampere and later): its exponent range is float32's, so
    gradients need no loss scaling; float16 with a GradScaler on older GPUs. AMP is CUDA only:
    on CPUs training stays float32 (the forward-only work has ``fast_inference``)."""
    if not amp or device.type != "cuda":
        return None
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def channels_last(x: torch.Tensor | torch.nn.Module, enabled: bool):
    """``x`` in channels_last memory format when ``enabled`` (4-D tensors and modules)."""
    import torch

    if not enabled or (isinstance(x, torch.Tensor) and x.dim() != 4):
        return x
    return x.to(memory_format=torch.channels_last)
