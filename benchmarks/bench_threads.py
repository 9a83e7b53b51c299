"""Benchmark: 1 vs 2 intra-op threads, on an idle machine and beside a CPU-bound process (issue 14).

Times a training step (VGG16 + ICSA + NetVLAD K=16, lowest trained block 1, 20 images of 64×80:
one query tuple of 1 + 1 + 18, forward, triplet-style loss, backward, SGD step) and an
extraction batch (16 images, no grad) with 1 and 2 torch threads, first idle, then while a
second process spins on one CPU (what another user's job is on a shared 2-core machine). The
variants run interleaved (A B A B ...) so that drifts of the machine hit them alike; each
figure is the median of ``--rounds`` repetitions. A 2-thread fp32 GEMM rate is measured beside
the numbers. Writes ``benchmarks/results/threads.md``. Run:

    .venv/bin/python benchmarks/bench_threads.py --rounds 7
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from icsa.io import atomic_path
from icsa.models import build_model
from icsa.utils import available_cpus

OUT = Path(__file__).parent / "results" / "threads.md"


def gemm_rate(threads: int = 2, n: int = 2048, reps: int = 8) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def _spin(stop: mp.Event) -> None:  # one CPU-bound competitor
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def make_step():
    torch.manual_seed(0)
    model = build_model("vgg16", "icsa", 16, (64, 80), lowest_trained_block=1)
    model.train()
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images = torch.randn(20, 3, 64, 80)
    batch = torch.randn(16, 3, 64, 80)

    def train_step() -> None:
        d = model(images)  # [20, D]: query, positive, 18 negatives
        q, p, n = d[:1], d[1:2], d[2:]
        loss = torch.relu(((q - p) ** 2).sum() - ((q - n) ** 2).sum(1) + 0.1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    def extract_batch() -> None:
        model.eval()
        with torch.inference_mode():
            model(batch)
        model.train()

    return {"training step": train_step, "extraction batch": extract_batch}


def measure(work: dict, rounds: int) -> dict[tuple[str, int], float]:
    times: dict[tuple[str, int], list[float]] = {(w, t): [] for w in work for t in (1, 2)}
    for fn in work.values():  # warm-up at both thread counts
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fn()
    for _ in range(rounds):
        for name, fn in work.items():
            for threads in (1, 2):
                torch.set_num_threads(threads)
                start = time.perf_counter()
                fn()
                times[(name, threads)].append(time.perf_counter() - start)
    return {key: statistics.median(v) for key, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    work = make_step()
    load_before = os.getloadavg()[0]
    gemm_before = gemm_rate()
    idle = measure(work, args.rounds)
    stop = mp.Event()
    competitor = mp.Process(target=_spin, args=(stop,), daemon=True)
    competitor.start()
    try:
        time.sleep(1.0)
        loaded = measure(work, args.rounds)
    finally:
        stop.set()
        competitor.join(10)
    gemm_after = gemm_rate()
    lines = [
        "# Threads under load (issue 14)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_threads.py --rounds {args.rounds}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs ({available_cpus()} available to "
        f"the process), torch {torch.__version__}; 2-thread fp32 GEMM {gemm_before:.0f} GFLOP/s "
        f"before, {gemm_after:.0f} after; load average {load_before:.2f} at start.",
        "",
        "Median seconds of one call; 'loaded' = while one other process spins on a CPU.",
        "",
        "| work | threads | idle (s) | loaded (s) | loaded / idle | vs 1 thread, loaded |",
        "|---|---|---|---|---|---|",
    ]
    for name in work:
        for threads in (1, 2):
            a, b = idle[(name, threads)], loaded[(name, threads)]
            ratio = b / loaded[(name, 1)]
            lines.append(
                f"| {name} | {threads} | {a:.3f} | {b:.3f} | {b / a:.2f}× | {ratio:.2f}× |"
            )
    step = "training step"
    speedup, slowdown = idle[(step, 1)] / idle[(step, 2)], loaded[(step, 2)] / loaded[(step, 1)]
    lines += [
        "",
        f"Reading: idle, 2 threads are {speedup:.2f}× faster than 1 for a training step; beside "
        f"a competitor they are {slowdown:.2f}× slower than 1 thread (OpenMP threads wait for "
        "the one that shares its CPU). Hence the "
        "defaults: a job never gets more threads than the CPUs it may use (icsa.utils."
        "available_cpus: affinity and cgroup quota), and where jobs share a small machine the "
        "configs give each job 1 CPU and run jobs side by side (config/config.yaml resources).",
        "",
        "Target (issue 14): under a competing process, a step no slower than 1.5 × its idle time ×",
        "the CPU share left to it. With one competitor on 2 CPUs, a 1-thread job keeps a whole CPU",
        "(share 1), a 2-thread job is left one CPU of the two it asks for.",
    ]
    with atomic_path(OUT) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
