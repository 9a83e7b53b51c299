"""Benchmark: the fast path of forward-only work (issue 14) — float32 vs bfloat16 autocast vs
channels_last vs both, for a VGG16 + ICSA + NetVLAD (K=16) extraction batch of 16 images at
64×80 and 240×320, interleaved (A B C D A B C D ...), medians of ``--rounds``; the descriptors'
largest change against float32 beside each. Writes ``benchmarks/results/fast_inference_forward.md``
(the Recall@N measurement on the default city is in ``fast_inference.md``). Run:

    .venv/bin/python benchmarks/bench_fast_inference.py --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from icsa.fast_inference import bf16_autocast, channels_last, cpu_has_bf16
from icsa.io import atomic_path
from icsa.models import build_model

OUT = Path(__file__).parent / "results" / "fast_inference_forward.md"
VARIANTS = {"float32": (False, False), "bfloat16": (True, False),
            "channels_last": (False, True), "bfloat16 + channels_last": (True, True)}  # fmt: skip


def forward(model, x, bf16: bool, last: bool) -> torch.Tensor:
    model = channels_last(model, last) if last else model.to(memory_format=torch.contiguous_format)
    with torch.inference_mode(), bf16_autocast(torch.device("cpu"), bf16):
        return model(channels_last(x, last)).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    lines = [
        "# Fast path of forward-only work: one extraction batch (issue 14)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_fast_inference.py --threads {args.threads} "
        f"--rounds {args.rounds}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads, CPU bfloat16 instructions: {cpu_has_bf16()}; load average "
        f"{load:.2f} at start.",
        "",
        "| image size | variant | median s / batch of 16 | speed-up vs float32 | max abs Δ "
        "| min cos |",
        "|---|---|---|---|---|---|",
    ]
    for size in ((64, 80), (240, 320)):
        torch.manual_seed(0)
        model = build_model("vgg16", "icsa", 16, size).eval()
        x = torch.randn(16, 3, *size)
        ref = forward(model, x, False, False)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for flags in VARIANTS.values():  # warm-up
            forward(model, x, *flags)
        for _ in range(args.rounds):
            for name, flags in VARIANTS.items():
                start = time.perf_counter()
                forward(model, x, *flags)
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["float32"])
        for name, flags in VARIANTS.items():
            out = forward(model, x, *flags)
            cos = torch.nn.functional.cosine_similarity(out, ref).min().item()
            median = statistics.median(times[name])
            lines.append(
                f"| {size[0]}×{size[1]} | {name} | {median:.3f} | {base / median:.2f}× | "
                f"{(out - ref).abs().max().item():.2e} | {cos:.5f} |"
            )
    with atomic_path(OUT) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
