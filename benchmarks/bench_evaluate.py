"""Evaluation speed and memory: extraction images/s and search+recall at Pitts30k scale.

    .venv/bin/python benchmarks/bench_evaluate.py [--threads 2] [--out FILE.md]

Each measurement runs in its own subprocess so that its peak RSS (``getrusage`` maxrss) is its
own. Parts:
- extract: VGG16 + NetVLAD (K=64, attention none, random weights) through the real pipeline
  (PNG decode, resize, ``extract_descriptors`` to a memmap) at 120×160 and 240×320, float32 vs
  bfloat16 autocast; on a small synthetic place set (queries are perturbed views of database
  scenes) also the descriptor difference and Recall@N of the two.
- search: 10,000 × 6,816 random L2-normalised descriptors at 32,768-D and 4,096-D in float32
  memmaps (as Pitts30k-test), ``recall_at_n`` with random UTM positions and a memory budget.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_DB, NUM_Q = 10_000, 6_816


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _scenes(root: Path, count: int, seed: int) -> list[Path]:
    """Smooth random 480×640 'scenes' (upsampled noise): structure for conv features to see."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC)
        noise = rng.integers(-25, 26, (480, 640, 3))
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        paths.append(root / f"s{seed}_{i:03d}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def _perturbed(root: Path, sources: list[Path], seed: int) -> list[Path]:
    """Queries: the source scene shifted by a few pixels, brighter, with fresh noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i, src in enumerate(sources):
        arr = np.asarray(Image.open(src), dtype=np.int16)
        arr = np.roll(arr, (int(rng.integers(-20, 21)), int(rng.integers(-20, 21))), axis=(0, 1))
        arr = np.clip(arr * 1.1 + 10 + rng.integers(-25, 26, arr.shape), 0, 255)
        out.append(root / f"q{seed}_{i:03d}.png")
        Image.fromarray(arr.astype(np.uint8)).save(out[-1])
    return out


def part_extract(threads: int) -> dict:
    import torch

    from icsa.data import ImageDataset
    from icsa.evaluate import extract_descriptors, extract_in_memory, recall_at_n
    from icsa.models import build_model
    from icsa.train.kmeans import run_kmeans, sample_local_descriptors

    torch.set_num_threads(threads)
    results: dict = {"speed": [], "bf16_supported": bool(torch.backends.mkldnn.is_available())}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db_paths = _scenes(root, 32, seed=0)
        q_paths = _perturbed(root, db_paths[::2], seed=1)
        for size, count in (((120, 160), 32), ((240, 320), 8)):
            model = build_model("vgg16", "none", 64, size, init_seed=0).eval()
            for bf16 in (False, True):
                warm = ImageDataset(db_paths[:2], size)
                extract_in_memory(model, warm, batch_size=2, device="cpu", fast=bf16)
                data = ImageDataset(db_paths[:count], size)
                t0, c0 = time.perf_counter(), _cpu_s()
                extract_descriptors(
                    model, data, root / "d.npy", batch_size=4, device="cpu", fast=bf16
                )
                seconds, cpu = time.perf_counter() - t0, _cpu_s() - c0
                results["speed"].append(
                    {
                        "size": f"{size[0]}x{size[1]}",
                        "bf16": bf16,
                        "images": count,
                        "seconds": round(seconds, 2),
                        "cpu_s": round(cpu, 2),
                        "images_per_s": round(count / seconds, 3),
                    }
                )
        # float32 vs bfloat16 on the small place set at 120×160. NetVLAD is initialised from
        # k-means on local features as in training: with random centroids the descriptors of
        # all images nearly coincide (nearest-neighbour distances ~3e-3) and the float32
        # rounding of any L2 search, not bfloat16, would decide the ranking.
        model = build_model("vgg16", "none", 64, (120, 160), init_seed=0).eval()
        local = sample_local_descriptors(
            model.backbone, ImageDataset(db_paths, (120, 160)), 32, 80, np.random.default_rng(0)
        )
        model.netvlad.init_from_centroids(run_kmeans(local, 64, 20, 0), local)
        db_utm = np.stack([np.arange(32) * 100.0, np.zeros(32)], axis=1)
        q_utm = db_utm[::2] + [3.0, 4.0]
        out = {}
        for bf16 in (False, True):
            db = extract_in_memory(
                model, ImageDataset(db_paths, (120, 160)), 4, device="cpu", fast=bf16
            )
            q = extract_in_memory(
                model, ImageDataset(q_paths, (120, 160)), 4, device="cpu", fast=bf16
            )
            out[bf16] = (db, q, recall_at_n(db, q, db_utm, q_utm))
        (d32, q32, r32), (d16, q16, r16) = out[False], out[True]
        a, b = np.concatenate([d32, q32]), np.concatenate([d16, q16])
        # Scale for the differences: how far apart a query's two nearest scenes are (fp32).
        dist = np.sqrt(((q32[:, None] - d32[None]) ** 2).sum(-1))
        nearest = np.sort(dist, axis=1)
        results["bf16_vs_fp32"] = {
            "images": len(a),
            "max_abs_diff": float(np.abs(a - b).max()),
            "mean_l2_change": float(np.linalg.norm(a - b, axis=1).mean()),
            "max_l2_change": float(np.linalg.norm(a - b, axis=1).max()),
            "mean_nn_gap": float((nearest[:, 1] - nearest[:, 0]).mean()),
            "top1_agreement": float(
                (dist.argmin(1) == ((q16[:, None] - d16[None]) ** 2).sum(-1).argmin(1)).mean()
            ),
            "recall_fp32": {str(k): v for k, v in r32.items()},
            "recall_bf16": {str(k): v for k, v in r16.items()},
        }
    results["maxrss_mb"] = round(_maxrss_mb(), 1)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    results["cpu_bf16"] = "yes" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "no"
    return results


def _write_random(path: Path, rows: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    for s in range(0, rows, 512):
        block = rng.standard_normal((min(512, rows - s), dim), dtype=np.float32)
        arr[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    arr.flush()
    del arr


def part_generate(folder: Path, dim: int) -> dict:
    _write_random(folder / "db.npy", NUM_DB, dim, 0)
    _write_random(folder / "q.npy", NUM_Q, dim, 1)
    return {}


def part_search(folder: Path, threads: int, dim: int, budget: float | None) -> dict:
    """Search the files of ``part_generate`` (written by another process: a clean maxrss)."""
    import faiss
    import torch

    from icsa.evaluate import recall_at_n
    from icsa.evaluate.search import plan_search

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    db = np.load(folder / "db.npy", mmap_mode="r")
    q = np.load(folder / "q.npy", mmap_mode="r")
    rng = np.random.default_rng(2)
    db_utm = rng.uniform(0, 2000, (NUM_DB, 2))
    q_utm = rng.uniform(0, 2000, (NUM_Q, 2))
    rss_before = _maxrss_mb()
    t0, c0 = time.perf_counter(), _cpu_s()
    recalls = recall_at_n(db, q, db_utm, q_utm, memory_budget_mb=budget)
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - c0
    plan = plan_search(NUM_DB, NUM_Q, dim, budget)
    return {
        "dim": dim,
        "budget_mb": budget,
        "shard_rows": plan.shard_rows,
        "query_chunk": plan.query_chunk,
        "search_recall_s": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "maxrss_before_mb": round(rss_before, 1),
        "maxrss_mb": round(_maxrss_mb(), 1),
        "recall": {str(k): v for k, v in recalls.items()},
        "file_gb": round((NUM_DB + NUM_Q) * dim * 4 / 1e9, 2),
    }


def _child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(extract: dict, searches: list[dict], threads: int, wall: dict) -> str:
    lines = [
        "# Evaluation benchmark",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_evaluate.py --threads {threads}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"shared with other jobs (load average at start {extract['load']}: wall times are "
        f"inflated, CPU seconds are the steadier figure), torch threads = faiss threads = "
        f"{threads}. Run time in s (whole run or one part): {wall}.",
        "",
        "## Extraction (VGG16 + NetVLAD K=64, random weights, PNG decode → memmap, batch 4)",
        "",
        "| image size | autocast | images | wall s | CPU s | images/s (wall) |",
        "|---|---|---|---|---|---|",
    ]
    for r in extract["speed"]:
        mode = "bfloat16" if r["bf16"] else "float32"
        lines.append(
            f"| {r['size']} | {mode} | {r['images']} | {r['seconds']} | "
            f"{r['cpu_s']} | {r['images_per_s']} |"
        )
    b = extract["bf16_vs_fp32"]
    lines += [
        "",
        f"CPU bfloat16 support (avx512_bf16/amx_bf16 in /proc/cpuinfo): {extract['cpu_bf16']}.",
        "",
        f"bfloat16 vs float32 descriptors on {b['images']} synthetic images (120×160, 32 "
        f"database scenes, 16 perturbed queries; unit-norm descriptors): max |Δ| per entry "
        f"{b['max_abs_diff']:.2e}, L2 change per descriptor mean {b['mean_l2_change']:.2e} / max "
        f"{b['max_l2_change']:.2e}, against a mean gap of {b['mean_nn_gap']:.2e} between a "
        f"query's two nearest scenes; same top-1 for {100 * b['top1_agreement']:.1f}% of "
        f"queries. Recall@1/5/10/20: float32 {_fmt(b['recall_fp32'])}, bfloat16 "
        f"{_fmt(b['recall_bf16'])} (random backbone, NetVLAD from k-means centroids). Peak RSS "
        f"{extract['maxrss_mb']} MB.",
        "",
        "## Search + Recall@N at Pitts30k scale (10,000 × 6,816, float32 memmaps, faiss CPU)",
        "",
        "| dim | files | memory budget | shard rows | query chunk | search+recall wall s | "
        "CPU s | peak RSS MB (before search) | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in searches:
        budget = "none (one shard)" if s["budget_mb"] is None else f"{s['budget_mb']:.0f} MB"
        cells = [s["dim"], f"{s['file_gb']} GB", budget, s["shard_rows"], s["query_chunk"]]
        cells += [s["search_recall_s"], s["cpu_s"], f"{s['maxrss_mb']} ({s['maxrss_before_mb']})"]
        cells.append(s.get("load", "?"))
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += [
        "",
        "Random descriptors: the recalls are chance level and only show that the run ended.",
        "Peak RSS is the whole process (Python, torch, faiss imported) from getrusage.",
    ]
    return "\n".join(lines) + "\n"


def _fmt(recalls: dict) -> str:
    return "/".join(f"{100 * v:.1f}" for v in recalls.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/evaluate.md"))
    parser.add_argument("--part", choices=("extract", "generate", "search"), default=None)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument(
        "--only",
        choices=("extract", "search"),
        default=None,
        help="rerun one part, keeping the other from the saved .json",
    )
    args = parser.parse_args()
    if args.part == "extract":
        print(json.dumps(part_extract(args.threads)))
        return
    if args.part == "generate":
        print(json.dumps(part_generate(args.folder, args.dim)))
        return
    if args.part == "search":
        print(json.dumps(part_search(args.folder, args.threads, args.dim, args.budget)))
        return
    t0 = time.perf_counter()
    saved_path = args.out.with_suffix(".json")
    saved = json.loads(saved_path.read_text()) if args.only and saved_path.exists() else {}
    load = f"{os.getloadavg()[0]:.1f}"
    common = ["--threads", str(args.threads)]
    if args.only != "extract":
        saved["searches"] = []
        for dim, budgets in ((4096, [None]), (32768, [1024])):
            with tempfile.TemporaryDirectory() as tmp:
                where = ["--folder", tmp, "--dim", str(dim)]
                _child(["--part", "generate", *where])
                for budget in budgets:
                    extra = [] if budget is None else ["--budget", str(budget)]
                    saved["searches"].append(
                        _child(["--part", "search", *where, *extra, *common]) | {"load": load}
                    )
    if args.only != "search":
        saved["extract"] = _child(["--part", "extract", *common]) | {"load": load}
    saved.setdefault("wall_s", {})[args.only or "all"] = round(time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(json.dumps(saved, indent=1) + "\n")
    report = _report(saved["extract"], saved["searches"], args.threads, saved["wall_s"])
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
