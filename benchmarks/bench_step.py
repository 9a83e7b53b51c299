"""A training step by phase against its compute floor (issue 30).

    .venv/bin/python benchmarks/bench_step.py [--image-size 480 640] [--clusters 64] [--steps 5]
        [--device cpu|cuda] [--threads 2] [--out benchmarks/results/step.md]

VGG16 + ICSA + NetVLAD, lowest trained block 5 with the frozen-prefix cache (float16), the
NetVLAD recipe's batch shape (4 queries × (1 + 1 + 10): 48 inputs a step, 1000 negatives drawn
per query), on a synthetic city rendered into a temporary folder. After one mining-cache refresh
it runs ``--steps`` steps of the pipeline's own code (``TripletTrainer``: ``mine_batch``,
``_step_inputs``, ``_step_descriptors``, ``_triplet_loss``, the optimiser) and times each phase:

- mining: the step's triplets from the descriptor cache on the training device;
- assembly: the step's cached prefixes gathered (and moved to the device);
- forward: blocks 5 → ICSA → NetVLAD → loss;
- backward: the loss's gradients;
- optimiser: SGD's update (and the GradScaler's no-op on CPU);
- logging: the loss read back to the host (the step's one synchronisation in training).

On CUDA the benchmark synchronises after each phase (training does not), so the phases add up
to more than a training step's time there; on the CPU every phase is synchronous anyway.

The compute floor is the step's FLOPs (forward + backward, counted by
``torch.utils.flop_counter.FlopCounterMode`` on one step) divided by the dense rate: the
2-thread fp32 GEMM (``bench_threads.gemm_rate``) on the CPU, a large fp32 / bf16 matmul on a GPU.
Writes ``--out`` and the same numbers as JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_threads import gemm_rate  # noqa: E402
from bench_train import city  # noqa: E402

from icsa.data import load_split  # noqa: E402
from icsa.models import build_model  # noqa: E402
from icsa.spec import ModelSpec, RunSpec  # noqa: E402
from icsa.step_settings import KMeansSettings  # noqa: E402
from icsa.train.job import RunContext  # noqa: E402
from icsa.train.kmeans import compute_centroids, load_centroids  # noqa: E402
from icsa.train.run import prepare_trainer  # noqa: E402
from icsa.train.settings import TrainSettings  # noqa: E402

PHASES = ("mining", "assembly", "forward", "backward", "optimiser", "logging")


def make_trainer(work: Path, size: tuple[int, int], clusters: int, device: torch.device):
    root = city(work / "synthetic", *size, train=(120, 24), val=(8, 4))
    model_spec = ModelSpec("vgg16", "icsa", clusters, size, lowest_trained_block="5")
    cfile = work / "centroids.npz"
    kmeans = KMeansSettings(max_images=40, iterations=20)
    compute_centroids(model_spec, root, "pitts30k", "train", cfile, kmeans)
    model = build_model(**model_spec.build_args())
    model.netvlad.init_from_centroids(*load_centroids(cfile, clusters, 512))
    # The recipe's batch shape; margin 1.0 so that a random-init model keeps 10 violators.
    settings = TrainSettings(batch_size=4, neg_samples=1000, neg_kept=10, margin=1.0, lr=1e-4)
    spec = RunSpec("pitts30k", model_spec, settings, seed=0)
    train, val = load_split(root, "pitts30k", "train"), load_split(root, "pitts30k", "val")
    return prepare_trainer(model, train, val, spec, RunContext(work / "run", device, False))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(tr, triplets) -> int:
    """FLOPs of one step's forward and backward (trained blocks, attention, NetVLAD, loss)."""
    tr.state.model.train()
    tr.state.optimizer.zero_grad(set_to_none=True)
    counter = FlopCounterMode(display=False)
    with counter:
        inputs, counts = tr._step_inputs(triplets)
        desc, _ = tr._step_descriptors(inputs, tr.sources.train_db.cached)
        tr._triplet_loss(desc, counts).backward()
    tr.state.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def time_steps(tr, steps: int, device: torch.device) -> tuple[dict, int, int]:
    """Seconds per phase of each step (lists), the step's inputs, and its FLOPs."""
    src = tr.sources
    db = tr.describe_on_device(src.train_db, np.arange(len(src.train_db)))
    queries = tr.geometry.trainable_queries[: 4 * (steps + 1)]
    q = tr.describe_on_device(src.train_q, queries)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    flops, inputs_per_step = 0, 0
    for step in range(steps + 1):  # step 0 warms up (and is where the FLOPs are counted)
        rows = slice(4 * step, 4 * step + 4)
        t = [time.perf_counter()]
        triplets = [x for x in tr.miner.mine_batch(
            [int(i) for i in queries[rows]], q[rows], db, rng) if x is not None]  # fmt: skip
        sync(device), t.append(time.perf_counter())
        tr.state.model.train()
        tr.state.optimizer.zero_grad(set_to_none=True)
        inputs, counts = tr._step_inputs(triplets)
        inputs = inputs.to(device)
        sync(device), t.append(time.perf_counter())
        desc, backward = tr._step_descriptors(inputs, src.train_db.cached)
        loss = tr._triplet_loss(desc, counts)
        sync(device), t.append(time.perf_counter())
        tr.state.scaler.scale(loss).backward()
        if backward is not None:
            backward()
        sync(device), t.append(time.perf_counter())
        tr.state.scaler.step(tr.state.optimizer)
        tr.state.scaler.update()
        sync(device), t.append(time.perf_counter())
        float(loss.detach())
        t.append(time.perf_counter())
        if step == 0:
            inputs_per_step = len(inputs)
            flops = step_flops(tr, triplets)
            continue
        for phase, a, b in zip(PHASES, t, t[1:]):
            times[phase].append(b - a)
    return times, inputs_per_step, flops


def dense_rate(device: torch.device, threads: int) -> tuple[float, str]:
    """GFLOP/s of the device's dense arithmetic the floor is measured against."""
    if device.type != "cuda":
        return gemm_rate(threads), f"{threads}-thread fp32 GEMM (2048²)"
    a = torch.randn(8192, 8192, device=device)
    a @ a
    sync(device)
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    sync(device)
    return 2 * 8192**3 * 10 / (time.perf_counter() - start) / 1e9, "fp32 matmul 8192² (TF32 off)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, nargs=2, default=(480, 640))
    p.add_argument("--clusters", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/step.md"))
    args = p.parse_args()
    device, size = torch.device(args.device), tuple(args.image_size)
    torch.set_num_threads(args.threads)
    rate0, rate_name = dense_rate(device, args.threads)
    load0, start = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tr = make_trainer(Path(tmp), size, args.clusters, device)
        times, inputs, flops = time_steps(tr, args.steps, device)
    rate1 = dense_rate(device, args.threads)[0]
    result = {
        "argv": sys.argv[1:], "machine": platform.machine(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device), "threads": args.threads, "rate_name": rate_name,
        "rate_gflops_before": rate0, "rate_gflops_after": rate1, "load_average": load0,
        "total_s": time.perf_counter() - start, "inputs_per_step": inputs, "step_flops": flops,
        "median_s": {k: float(np.median(v)) for k, v in times.items()}, "times_s": times,
    }  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.write_text(render(result, size, args.clusters))
    print(args.out.read_text())


def render(r: dict, size: tuple[int, int], clusters: int) -> str:
    med = r["median_s"]
    step = sum(med.values())
    rate = (r["rate_gflops_before"] + r["rate_gflops_after"]) / 2
    floor = r["step_flops"] / (rate * 1e9)
    lines = [
        "# A training step by phase, against its compute floor (issue 30)",
        "",
        f"Command: `python benchmarks/bench_step.py {' '.join(r['argv'])}`  ",
        f"Machine: {r['machine']}, {r['cpus']} CPUs, torch {r['torch']} (ATen CPU capability "
        f"{r['cpu_capability']}), device {r['device']}, {r['threads']} threads; "
        f"{r['rate_name']} {r['rate_gflops_before']:.0f} GFLOP/s before, "
        f"{r['rate_gflops_after']:.0f} after; load average {r['load_average']:.2f} at start; "
        f"total {r['total_s']:.0f} s.",
        "",
        f"VGG16 + ICSA + NetVLAD (K = {clusters}) at {size[0]}×{size[1]}, lowest trained "
        f"block 5, float16 prefix cache; {r['inputs_per_step']} inputs a step; median of "
        f"{len(r['times_s']['forward'])} steps after one warm-up step.",
        "",
        "| phase | median s | share |",
        "|---|---|---|",
        *(f"| {k} | {v:.4f} | {100 * v / step:.1f} % |" for k, v in med.items()),
        f"| **step** | **{step:.4f}** | 100 % |",
        "",
        f"Step FLOPs (forward + backward, FlopCounterMode): {r['step_flops'] / 1e9:.1f} GFLOP. "
        f"Compute floor at {rate:.0f} GFLOP/s (the mean of before and after): {floor:.4f} s. "
        f"**Step / floor: {step / floor:.2f}×.**",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
