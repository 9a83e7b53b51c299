"""Epoch time with the frozen-prefix cache vs recomputing every forward, over several epochs.

    .venv/bin/python benchmarks/bench_train.py [--epochs 3] [--blocks 5 3 1] [--threads 2]

On a synthetic city (rendered into a temporary folder with the sizes below) it trains VGG16 +
NetVLAD (random init, k-means centroids) from lowest trained block 5, 3 and 1, each twice: with
the prefix cache (icsa's default) and recomputing the frozen blocks from decoded images at
every step and refresh (what the public pytorch-NetVlad code does). The two runs of a block
alternate epoch by epoch, so that the load of a shared machine falls on both alike. Each run is
the pipeline's own code (``prepare_trainer``, ``train_epoch``, ``validate``); a run's time is
its set-up (the cache build) plus its epochs (training steps, mining refreshes, validation).
At block 5 it also compares validation recall with a float16 and a float32 prefix cache.
Writes benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_threads import gemm_rate  # noqa: E402

from icsa.data import load_split  # noqa: E402
from icsa.data.synthetic import CitySettings, generate  # noqa: E402
from icsa.models import build_model  # noqa: E402
from icsa.spec import ModelSpec, RunSpec  # noqa: E402
from icsa.step_settings import KMeansSettings  # noqa: E402
from icsa.train.job import RunContext  # noqa: E402
from icsa.train.kmeans import compute_centroids, load_centroids  # noqa: E402
from icsa.train.run import prepare_trainer  # noqa: E402
from icsa.train.settings import TrainSettings  # noqa: E402

CLUSTERS = 16


def city(root: Path, height: int, width: int, train=(150, 60), val=(60, 30)) -> Path:
    """A synthetic city's Pitts30k under ``root`` with (database, query) counts per split."""
    settings = CitySettings(
        image_height=height, image_width=width, train_db=train[0], train_q=train[1],
        val_db=val[0], val_q=val[1],
        test_db=8, test_q=4, tokyo_train_db=8, tokyo_train_q=4, tokyo_val_db=8, tokyo_val_q=4,
    )  # fmt: skip
    generate(root, 0, settings, progress=False)
    return root / "pitts30k"


def trainer(root: Path, work: Path, block: str, cache: bool, size, cents, dtype="float16"):
    settings = TrainSettings(
        batch_size=4, lr=1e-3, neg_samples=1000, neg_kept=10, validate_untrained=False,
        prefix_cache=cache, prefix_cache_dtype=dtype, patience=0,
    )  # fmt: skip
    model_spec = ModelSpec("vgg16", "none", CLUSTERS, size, lowest_trained_block=block)
    spec = RunSpec("pitts30k", model_spec, settings, seed=0)
    model = build_model(**model_spec.build_args())
    model.netvlad.init_from_centroids(*cents)
    train, val = load_split(root, "pitts30k", "train"), load_split(root, "pitts30k", "val")
    context = RunContext(work / f"b{block}-{cache}-{dtype}", torch.device("cpu"), False)
    t0 = time.perf_counter()
    tr = prepare_trainer(model, train, val, spec, context)
    return tr, time.perf_counter() - t0


def measure(root: Path, work: Path, block: str, epochs: int, size, cents) -> dict:
    """Both runs of one block, epoch by epoch in turn."""
    runs, out = {}, {}
    for cache in (True, False):
        runs[cache], setup = trainer(root, work, block, cache, size, cents)
        out[cache] = {"setup_s": setup, "train_s": 0.0, "refresh_s": 0.0, "val_s": 0.0,
                      "triplets": 0, "recall@5": []}  # fmt: skip
    for epoch in range(1, epochs + 1):
        for cache, tr in runs.items():
            stats = tr.train_epoch(epoch)
            t0 = time.perf_counter()
            recalls = tr.validate()
            o = out[cache]
            o["val_s"] += time.perf_counter() - t0
            o["train_s"] += stats["train_s"]
            o["refresh_s"] += stats["cache_refresh_s"]
            o["triplets"] += stats["triplets"]
            o["recall@5"].append(recalls["recall@5"])
    for o in out.values():
        o["total_s"] = o["setup_s"] + o["train_s"] + o["refresh_s"] + o["val_s"]
    return out


def fp16_vs_fp32(root: Path, work: Path, size, cents) -> dict:
    """Validation recall of the untrained block-5 model with a float32 and a float16 cache."""
    out = {}
    for dtype in ("float32", "float16"):
        tr, _ = trainer(root, work, "5", True, size, cents, dtype)
        db = tr.describe(tr.sources.val_db, np.arange(len(tr.sources.val_db)))
        out[dtype] = {"recalls": tr.validate(), "db": db}
    diff = float(np.abs(out["float32"]["db"] - out["float16"]["db"]).max())
    return {"recalls": {k: v["recalls"] for k, v in out.items()}, "max_abs_diff": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--blocks", nargs="+", default=["5", "3", "1"])
    p.add_argument("--image-size", type=int, nargs=2, default=(96, 128))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train.md"))
    args = p.parse_args()
    size = tuple(args.image_size)
    gemm0, load0, start = gemm_rate(), os.getloadavg()[0], time.perf_counter()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = city(work / "synthetic", *size)
        cfile = work / "c.npz"
        model = ModelSpec("vgg16", "none", CLUSTERS, size)
        compute_centroids(
            model, root, "pitts30k", "train", cfile, KMeansSettings(40, iterations=20)
        )
        cents = load_centroids(cfile, CLUSTERS, 512)
        rows = {b: measure(root, work, b, args.epochs, size, cents) for b in args.blocks}
        fp = fp16_vs_fp32(root, work, size, cents)
        counts = load_split(root, "pitts30k", "train").db, load_split(root, "pitts30k", "val").db
    total = time.perf_counter() - start
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads; 2-thread fp32 GEMM {gemm0:.0f} GFLOP/s before, "
        f"{gemm_rate():.0f} after; load average {load0:.2f} at start; total {total:.0f} s"
    )
    args.out.write_text(render(args, rows, fp, counts, machine))
    print(args.out.read_text())


def render(args, rows: dict, fp: dict, counts, machine: str) -> str:
    train, val = counts
    argv = " ".join(sys.argv[1:])
    lines = [
        "# Training time: the frozen-prefix cache vs recomputing every forward (issue 14)", "",
        f"Command: `{' '.join(['python benchmarks/bench_train.py', argv]).strip()}`  ",
        f"Machine: {machine}.", "",
        f"Data: a synthetic city, pitts30k-train {train.num_db} database images / {train.num_q} "
        f"queries, val {val.num_db} / {val.num_q}; {args.image_size[0]}×{args.image_size[1]} "
        f"images; VGG16 + NetVLAD K = {CLUSTERS} (random init, k-means centroids); batch 4 "
        "queries × (1 positive + 10 negatives), 1000 negatives sampled per query; "
        f"{args.epochs} epochs, each with a mining refresh and a validation.", "",
        "| lowest trained block | prefix cache | set-up s (cache build) | train steps s | "
        "mining refresh s | validation s | total s | cache vs recompute |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for block, out in rows.items():
        ratio = out[False]["total_s"] / out[True]["total_s"]
        for cache in (True, False):
            o = out[cache]
            lines.append(
                f"| {block} | {'float16' if cache else 'none (recompute)'} | {o['setup_s']:.1f} | "
                f"{o['train_s']:.1f} | {o['refresh_s']:.1f} | {o['val_s']:.1f} | "
                f"{o['total_s']:.1f} | {f'{ratio:.2f}×' if cache else '1.00×'} |"
            )
    lines += ["", "Validation Recall@5 per epoch (the two runs of a block must agree up to the "
              "float16 rounding of the cache):", ""]  # fmt: skip
    for block, out in rows.items():
        lines.append(f"- block {block}: cache {out[True]['recall@5']}, "
                     f"recompute {out[False]['recall@5']}")  # fmt: skip
    rec = fp["recalls"]
    lines += [
        "", "## float16 vs float32 prefix cache (block 5, untrained model, validation split)", "",
        "| prefix dtype | R@1 | R@5 | R@10 | R@20 |", "|---|---|---|---|---|",
        *(f"| {d} | " + " | ".join(f"{rec[d][f'recall@{n}']:.4f}" for n in (1, 5, 10, 20)) + " |"
          for d in rec),
        "", f"Largest database-descriptor difference {fp['max_abs_diff']:.2e} (unit-norm "
        "descriptors).",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
