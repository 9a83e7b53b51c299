"""Training speed with and without the frozen-prefix cache; float16 vs float32 prefix recall.

    .venv/bin/python benchmarks/bench_train.py [--data data/synthetic] [--threads 2]

On the synthetic default city (generated into --data with ``CitySettings()`` when missing) it
takes a subset of pitts30k-train (the first --db database images and --queries queries with a
positive among them) and, for lowest trained block 5, 3 and 1, with and without the prefix cache:
- the one-off cache build time,
- the mining-cache refresh (describe every subset image with the current model), per image and
  extrapolated to a full refresh of the default split (1000 database + 1000 queries),
- triplets/s of the training steps (mining + forward + backward + SGD; refresh excluded),
after one untimed warm-up step. Cached and recomputed steps alternate, so that the load of a
shared machine affects both alike.
At block 5 it also compares validation recall with a float16 and a float32 prefix cache.
Writes benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from icsa.data import load_split
from icsa.data.synthetic import CitySettings, generate
from icsa.evaluate.recall import RECALL_VALUES, recall_at_n
from icsa.models import build_model
from icsa.train import TrainSettings, TripletTrainer
from icsa.train.kmeans import compute_centroids, load_centroids
from icsa.train.prefix_cache import InputSource
from icsa.utils import resolve_device

FULL_REFRESH_IMAGES = 2000  # default city: 1000 train database images + 1000 queries


def subset(split, num_db: int, num_q: int):
    """The first num_db database images and the first num_q queries with a 10 m positive."""
    db = split.db
    d = np.linalg.norm(db.q_utm[:, None, :] - db.db_utm[None, :num_db, :], axis=2)
    queries = np.flatnonzero((d <= 10.0).any(axis=1))[:num_q]
    sub = dataclasses.replace(
        db,
        db_images=db.db_images[:num_db],
        db_utm=db.db_utm[:num_db],
        q_images=[db.q_images[i] for i in queries],
        q_utm=db.q_utm[queries],
        num_db=num_db,
        num_q=len(queries),
    )
    return dataclasses.replace(
        split, db=sub, db_paths=split.db_paths[:num_db], q_paths=[split.q_paths[i] for i in queries]
    )


def measure(args, train, val, cents, block: str, device, work: Path) -> list[dict]:
    """Cached vs recomputed prefix at one block, interleaved so that load drift cancels."""
    trainers, build_s = {}, {}
    for cache in (True, False):
        model = build_model("vgg16", "none", args.clusters, args.image_size, block, "none", 0)
        model.netvlad.init_from_centroids(*cents)
        settings = TrainSettings(batch_size=args.batch_size, lr=1e-4, prefix_cache=cache)
        t0 = time.perf_counter()
        trainers[cache] = TripletTrainer(
            model, train, val, settings, work / f"b{block}-{cache}", 0, device, False
        )
        build_s[cache] = time.perf_counter() - t0 if cache else 0.0
    refresh_s, train_s, triplets, cached = {}, {True: 0.0, False: 0.0}, {}, {}
    for cache, tr in trainers.items():
        tr.describe("train-db", np.arange(2))  # warm-up (allocator, thread pool), not timed
        t0 = time.perf_counter()
        cached[cache] = (
            tr.describe("train-db", np.arange(train.db.num_db)),
            tr.describe("train-q", np.arange(train.db.num_q)),
        )
        refresh_s[cache] = time.perf_counter() - t0
    rngs = {cache: np.random.default_rng(0) for cache in trainers}

    def step(cache: bool, batch) -> int:  # the loop's step: mine, forward, loss, backward, SGD
        tr, (db, q) = trainers[cache], cached[cache]
        triplets = [t for i in batch if (t := tr.miner.mine(int(i), q[i], db, rngs[cache]))]
        if not triplets:
            return 0
        tr.model.train()
        tr.optimizer.zero_grad(set_to_none=True)
        loss, used = tr._loss(triplets)
        loss.backward()
        tr.optimizer.step()
        return used

    queries = trainers[True].geometry.trainable_queries
    for cache in trainers:
        step(cache, queries[:1])  # warm-up step, not timed
    triplets = {True: 0, False: 0}
    for i in range(0, len(queries), args.batch_size):
        for cache in trainers:  # alternate the two configurations step by step
            t0 = time.perf_counter()
            triplets[cache] += step(cache, queries[i : i + args.batch_size])
            train_s[cache] += time.perf_counter() - t0
    images = train.db.num_db + train.db.num_q
    return [
        {
            "block": block,
            "cache": cache,
            "build_s": build_s[cache],
            "refresh_s": refresh_s[cache],
            "refresh_ms_img": 1e3 * refresh_s[cache] / images,
            "triplets": triplets[cache],
            "train_s": train_s[cache],
            "triplets_s": triplets[cache] / train_s[cache],
        }
        for cache in trainers
    ]


def fp16_vs_fp32(args, train, val, cents, device, work: Path) -> dict:
    """Val recall of one model with the float32 cache and the same cache rounded to float16."""
    model = build_model("vgg16", "none", args.clusters, args.image_size, "5", "none", 0)
    model.netvlad.init_from_centroids(*cents)
    settings = TrainSettings(prefix_cache_dtype="float32", validate_untrained=False)
    trainer = TripletTrainer(model, train, val, settings, work / "fp", 0, device, False)
    out = {}
    for dtype in ("float32", "float16"):
        for name in ("val-db", "val-q"):
            src = trainer.sources[name]
            trainer.sources[name] = InputSource(src.dataset, np.asarray(src.prefix).astype(dtype))
        db = trainer.describe("val-db", np.arange(val.db.num_db))
        q = trainer.describe("val-q", np.arange(val.db.num_q))
        recalls = recall_at_n(db, q, val.db.db_utm, val.db.q_utm, RECALL_VALUES, 25.0)
        top1 = np.argmin(((q[:, None, :] - db[None]) ** 2).sum(-1), axis=1)
        out[dtype] = {"recalls": recalls, "desc": np.concatenate([db, q]), "top1": top1}
    diff = np.abs(out["float32"]["desc"] - out["float16"]["desc"]).max()
    same_top1 = float(np.mean(out["float32"]["top1"] == out["float16"]["top1"]))
    return {
        "recalls": {k: v["recalls"] for k, v in out.items()},
        "max_abs_diff": float(diff),
        "same_top1": same_top1,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        default=None,
        help="synthetic root holding pitts30k/ (default: generate into a temp dir)",
    )
    p.add_argument("--db", type=int, default=60)
    p.add_argument("--queries", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--val-db", type=int, default=150)
    p.add_argument("--val-q", type=int, default=100)
    p.add_argument("--clusters", type=int, default=64)
    p.add_argument("--image-size", type=int, nargs=2, default=(120, 160))
    p.add_argument("--blocks", nargs="+", default=["5", "3", "1"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="benchmarks/results/train.md")
    args = p.parse_args()
    args.image_size = tuple(args.image_size)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    start, load0 = time.perf_counter(), os.getloadavg()
    scratch = tempfile.TemporaryDirectory()
    root = Path(args.data) if args.data else Path(scratch.name) / "synthetic"
    gen_s = None
    if not (root / "pitts30k" / "datasets" / "pitts30k_train.mat").is_file():
        gen_s = generate(root, 0, CitySettings(), progress=False)["seconds"]
    train_full = load_split(root / "pitts30k", "pitts30k", "train")
    train = subset(train_full, args.db, args.queries)
    val_tiny = subset(load_split(root / "pitts30k", "pitts30k", "val"), 20, 2)
    val = subset(load_split(root / "pitts30k", "pitts30k", "val"), args.val_db, args.val_q)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfile = work / "c.npz"
        compute_centroids(
            root / "pitts30k",
            "pitts30k",
            "train",
            "vgg16",
            "none",
            0,
            args.image_size,
            args.clusters,
            cfile,
            max_images=20,
            iterations=20,
        )
        cents = load_centroids(cfile, args.clusters, 512)
        rows = [
            r for b in args.blocks for r in measure(args, train, val_tiny, cents, b, device, work)
        ]
        fp = fp16_vs_fp32(args, train, val, cents, device, work)
    scratch.cleanup()
    total = time.perf_counter() - start
    write_report(args, rows, fp, train, val, gen_s, total, load0, os.getloadavg(), device)


def epoch_lines(rows: list[dict]) -> list[str]:
    """Per-epoch estimate for the default split: one full refresh + 1000 queries × 10 triplets."""
    est = {
        (r["block"], r["cache"]): r["refresh_ms_img"] * FULL_REFRESH_IMAGES / 1e3
        + 10_000 / r["triplets_s"]
        for r in rows
    }
    lines = [
        "",
        "Estimated time of one default epoch (one full refresh + 1000 queries × 10 "
        "triplets at the rates above):",
        "",
    ]
    for block in dict.fromkeys(r["block"] for r in rows):
        cached, recomputed = est[(block, True)], est[(block, False)]
        lines.append(
            f"- block {block}: {cached:.0f} s with the prefix cache, {recomputed:.0f} s "
            f"recomputing ({recomputed / cached:.2f}×)"
        )
    return lines


def write_report(args, rows, fp, train, val, gen_s, total, load0, load1, device) -> None:
    base = {r["block"]: r["triplets_s"] for r in rows if not r["cache"]}
    lines = [
        "# Training throughput and the frozen-prefix cache (issue 4)",
        "",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"device {device}, {args.threads} threads; load average {load0[0]:.1f} at start, "
        f"{load1[0]:.1f} at end (shared machine); total {total:.0f} s"
        + (f"; the synthetic default was generated in {gen_s:.0f} s" if gen_s else "")
        + ".",
        "",
        f"Data: synthetic default city, pitts30k-train subset: first {train.db.num_db} database "
        f"images and {train.db.num_q} queries with a 10 m positive among them; "
        f"{args.image_size[0]}×{args.image_size[1]} images; VGG16 + NetVLAD K={args.clusters} "
        f"(random init); batch {args.batch_size} queries × (1 positive + 10 negatives), "
        "1000 negatives sampled per query.",
        "",
        "| lowest trained block | prefix cache | cache build (s) | refresh (ms/image) | "
        "full refresh, 2000 images (s) | triplets | train (s) | triplets/s | vs. recompute |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['block']} | {'float16' if r['cache'] else 'none (recompute)'} | "
            f"{r['build_s']:.1f} | {r['refresh_ms_img']:.1f} | "
            f"{r['refresh_ms_img'] * FULL_REFRESH_IMAGES / 1e3:.0f} | {r['triplets']} | "
            f"{r['train_s']:.1f} | {r['triplets_s']:.1f} | "
            f"{r['triplets_s'] / base[r['block']]:.2f}× |"
        )
    lines += epoch_lines(rows)
    r32, r16 = fp["recalls"]["float32"], fp["recalls"]["float16"]
    lines += [
        "",
        f"## float16 vs float32 prefix cache (block 5, pitts30k-val subset: "
        f"{val.db.num_db} database, {val.db.num_q} queries, untrained model)",
        "",
        "| prefix dtype | " + " | ".join(f"R@{n}" for n in RECALL_VALUES) + " |",
        "|---|" + "---|" * len(RECALL_VALUES),
        "| float32 | " + " | ".join(f"{r32[n]:.4f}" for n in RECALL_VALUES) + " |",
        "| float16 | " + " | ".join(f"{r16[n]:.4f}" for n in RECALL_VALUES) + " |",
        "",
        f"Largest descriptor difference {fp['max_abs_diff']:.2e} (descriptors have unit norm); "
        f"the top-1 database image is the same for {100 * fp['same_top1']:.1f}% of queries.",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
