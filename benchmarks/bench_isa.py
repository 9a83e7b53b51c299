"""What the CPU's instruction set changes: the default's work under AVX-512 and AVX2 kernels.

    .venv/bin/python benchmarks/bench_isa.py [--rounds 4] [--out benchmarks/results/isa.md]

Runs itself once per kernel selection, each in a fresh process (the selections are read when
torch loads), alternating, and reports medians side by side:

- ``default``: what torch picks on this CPU;
- ``avx2``: ``ATEN_CPU_CAPABILITY=avx2`` (ATen's own vectorised kernels),
  ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's convolutions), ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (MKL's
  GEMM) — an AVX2-only machine's kernels on this machine's cores. It does not emulate that
  machine's cores: clock, caches, memory bandwidth and FMA width stay this CPU's (on an AMD Zen 4,
  which runs AVX-512 as two 256-bit halves, the 2048² GEMM is about the same either way).
  bfloat16 is not used here (the workflow's ``fast_inference: "off"``).

The work, one thread each (the workflow's jobs on two cores): the 2048² fp32 GEMM the budgets
scale by; a VGG16 + ICSA + NetVLAD training step from block 1 at the default's 32×48 (4 × (1 + 1
+ 3) = 20 inputs); a forward of 16 images (extraction), each with oneDNN and with torch's native
convolutions, NCHW and channels_last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}  # fmt: skip
LAYOUTS = {"oneDNN NCHW": (True, False), "oneDNN channels_last": (True, True),
           "native NCHW": (False, False), "native channels_last": (False, True)}  # fmt: skip


def measure() -> dict:
    """One round in this process: seconds per GEMM, step and forward for each layout."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from icsa.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    a = torch.randn(2048, 2048)
    a @ a
    t = time.perf_counter()
    for _ in range(3):
        a @ a
    out = {"gemm_gflops": 2 * 2048**3 * 3 / (time.perf_counter() - t) / 1e9,
           "capability": torch.backends.cpu.get_cpu_capability()}  # fmt: skip
    model = build_model("vgg16", "icsa", 16, (32, 48), lowest_trained_block="1")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x20, x16 = torch.randn(20, 3, 32, 48), torch.randn(16, 3, 32, 48)

    def step(x):
        model.train()
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()

    def forward(x):
        model.eval()
        with torch.no_grad():
            model(x)

    for name, (onednn, last) in LAYOUTS.items():
        fmt = torch.channels_last if last else torch.contiguous_format
        model.to(memory_format=fmt)
        with torch.backends.mkldnn.flags(enabled=onednn):
            for key, fn, x in (("step", step, x20), ("forward16", forward, x16)):
                x = x.contiguous(memory_format=fmt)
                fn(x)
                t = time.perf_counter()
                fn(x)
                fn(x)
                out[f"{name}|{key}"] = (time.perf_counter() - t) / 2
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/isa.md"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure()))
        return
    runs: dict[str, list[dict]] = {"default": [], "avx2": []}
    load0, start = os.getloadavg()[0], time.perf_counter()
    for _ in range(args.rounds):
        for kind in runs:  # alternating, so a shared machine's load falls on both
            env = {**os.environ, **(AVX2 if kind == "avx2" else {})}
            child = [sys.executable, __file__, "--child"]
            out = subprocess.run(child, env=env, capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0] if m != "capability"}
           for k, v in runs.items()}  # fmt: skip
    caps = {k: v[0]["capability"] for k, v in runs.items()}
    lines = [
        "# What the CPU's instruction set changes (issue 30)",
        "",
        f"Command: `python benchmarks/bench_isa.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs; "
        f"load average {load0:.2f} at start; {args.rounds} alternating rounds, medians; "
        f"total {time.perf_counter() - start:.0f} s. ATen capability: default "
        f"{caps['default']}, avx2 {caps['avx2']}.",
        "",
        "| work (1 thread) | default | avx2 | avx2 ÷ default |",
        "|---|---|---|---|",
        f"| fp32 GEMM 2048², GFLOP/s | {med['default']['gemm_gflops']:.0f} | "
        f"{med['avx2']['gemm_gflops']:.0f} | "
        f"{med['default']['gemm_gflops'] / med['avx2']['gemm_gflops']:.2f}× (time) |",
    ]
    for key in (k for k in med["default"] if "|" in k):
        layout, work = key.split("|")
        what = "training step, block 1, 20 inputs" if work == "step" else "forward, 16 images"
        d, a = med["default"][key], med["avx2"][key]
        lines.append(f"| {what}, {layout}, s | {d:.3f} | {a:.3f} | {a / d:.2f}× |")
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
