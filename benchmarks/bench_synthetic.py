"""Benchmark the synthetic city: generation time, and whether it is a real task.

1. Generation: renders the default city (``CitySettings()``, seed 0) and records wall time, CPU
   time (this process + workers) and the load average (the machine is shared).
2. Geometry: fraction of queries with a database image within 25 m, training queries with a
   non-trivial positive within 10 m, and the smallest database distance between splits.
3. "A real task" on pitts30k-test: a randomly initialised VGG16 (weights none, init_seed 0)
   + NetVLAD initialised from k-means on its own local descriptors of 100 training database
   images (K = 16 and 64) must reach Recall@1 within 10–50 %; a trivial baseline (8×6-pixel
   thumbnails, L2 kNN) must not solve it. Also reported for tokyotm-val.
Writes benchmarks/results/synthetic.md and .json.

    .venv/bin/python benchmarks/bench_synthetic.py [--out DIR] [--reuse] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from PIL import Image
from scipy.spatial import cKDTree

from icsa.data import ImageDataset, load_split
from icsa.data.synthetic import CitySettings, generate, plan_cities
from icsa.evaluate import retrieve
from icsa.io import atomic_path
from icsa.models import build_model
from icsa.train.kmeans import run_kmeans

NS = (1, 5, 10, 20)


def _cpu_seconds() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure_generation(out: Path, seed: int, settings: CitySettings, workers: int) -> dict:
    load = os.getloadavg()[0]
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    summary = generate(out, seed, settings, workers=workers)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "workers": workers,
        "images": summary["images"],
        "load_avg_before": round(load, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }


def geometry(root: Path) -> dict:
    out = {}
    splits = {
        d: [s for s in ("train", "val", "test") if (root / d / "datasets").is_dir()]
        for d in ("pitts30k", "tokyotm")
    }
    for dataset, names in splits.items():
        loaded = {}
        for split in names:
            try:
                loaded[split] = load_split(root / dataset, dataset, split)
            except Exception:  # noqa: BLE001 — tokyotm has no test split
                continue
        for split, sp in loaded.items():
            d, _ = cKDTree(sp.db.db_utm).query(sp.db.q_utm)
            entry = {
                "num_db": sp.db.num_db,
                "num_q": sp.db.num_q,
                "q_with_pos_25m": float(np.mean(d <= 25.0)),
                "q_with_pos_10m": float(np.mean(d <= 10.0)),
            }
            others = [o.db.db_utm for s, o in loaded.items() if s != split]
            if others:
                entry["min_db_dist_to_other_splits_m"] = float(
                    cKDTree(np.concatenate(others)).query(sp.db.db_utm)[0].min()
                )
            out[f"{dataset}-{split}"] = entry
    return out


def thumbnails(paths: list[Path], size=(8, 6)) -> np.ndarray:
    rows = [
        np.asarray(
            Image.open(p).convert("RGB").resize(size, Image.Resampling.BOX), dtype=np.float32
        ).ravel()
        / 255.0
        for p in paths
    ]
    return np.stack(rows)


@torch.no_grad()
def local_features(
    model, paths: list[Path], size: tuple[int, int], batch: int = 32
) -> torch.Tensor:
    data = ImageDataset(paths, size)
    feats = []
    for i in range(0, len(data), batch):
        x = torch.stack([data[j][0] for j in range(i, min(i + batch, len(data)))])
        feats.append(model.local_features(x))  # [B,C,h,w]
    return torch.cat(feats)


def query_times_of_day(seed: int, settings: CitySettings, dataset: str, q_names: list[str]):
    """Each query's time of day (day/dusk/night), from the generator's deterministic plan."""
    _, _, jobs, _ = plan_cities(seed, settings)
    base = {"pitts30k": "pitts30k/queries_real/", "tokyotm": "tokyotm/images/"}[dataset]
    time_of = {j.path.removeprefix(base): j.appearance.time for j in jobs}
    return np.array([time_of[name] for name in q_names])


def _scores(sp, db: np.ndarray, q: np.ndarray, times: dict, tod: np.ndarray) -> dict:
    r = retrieve(db, q, sp.db.db_utm, sp.db.q_utm, max(NS), 25.0, **times)
    out = {str(n): round(v, 4) for n, v in r.recalls(NS).items()}
    for t in ("day", "dusk", "night"):
        if (tod == t).any():
            out[f"1_{t}"] = round(float(np.mean(r.first_hit_rank[tod == t] == 0)), 4)
    return out


@torch.no_grad()
def real_task(
    root: Path, dataset: str, split: str, train_split: str, clusters: list[int],
    size: tuple[int, int], seed: int, settings: CitySettings,
) -> dict:  # fmt: skip
    """Random VGG16 + NetVLAD (k-means init) vs. thumbnails on one split."""
    sp = load_split(root / dataset, dataset, split)
    tr = load_split(root / dataset, dataset, train_split)
    tod = query_times_of_day(seed, settings, dataset, sp.db.q_images)
    times = {}
    if sp.db.db_timestamps is not None:  # TokyoTM rule: positives from another capture time
        times = {"db_times": sp.db.db_timestamps, "query_times": sp.db.q_timestamps}
    positives = retrieve(np.zeros((sp.db.num_db, 1), np.float32),
                         np.zeros((sp.db.num_q, 1), np.float32), sp.db.db_utm, sp.db.q_utm, 1,
                         25.0, **times).num_positives  # fmt: skip
    res = {"split": f"{dataset}-{split}", "queries_by_time": {t: int((tod == t).sum())
           for t in ("day", "dusk", "night")},
           "chance_r1": round(float(np.mean(positives / sp.db.num_db)), 4)}  # fmt: skip
    rng = np.random.default_rng(0)
    km_paths = [
        tr.db_paths[i]
        for i in np.sort(rng.choice(tr.db.num_db, min(100, tr.db.num_db), replace=False))
    ]
    base = build_model("vgg16", "none", clusters[0], size, weights="none", init_seed=0).eval()
    t0 = time.perf_counter()
    f_km = local_features(base, km_paths, size)
    f_db = local_features(base, sp.db_paths, size)
    f_q = local_features(base, sp.q_paths, size)
    res["cnn_seconds"] = round(time.perf_counter() - t0, 1)
    res["feature_shape"] = list(f_db.shape[1:])
    local = torch.nn.functional.normalize(f_km, dim=1).flatten(2).transpose(1, 2)  # [N,hw,C]
    per = min(50, local.shape[1])
    desc = np.concatenate(
        [img[rng.choice(local.shape[1], per, replace=False)].numpy() for img in local]
    )
    for k in clusters:
        model = build_model("vgg16", "none", k, size, weights="none", init_seed=0).eval()
        model.netvlad.init_from_centroids(run_kmeans(desc, k, 50, seed=0), desc)
        db = torch.cat([model.netvlad(f_db[i : i + 64]) for i in range(0, len(f_db), 64)])
        q = torch.cat([model.netvlad(f_q[i : i + 64]) for i in range(0, len(f_q), 64)])
        res[f"vgg16_netvlad_k{k}"] = _scores(sp, db.numpy(), q.numpy(), times, tod)
    t_db, t_q = thumbnails(sp.db_paths), thumbnails(sp.q_paths)
    res["thumbnail_8x6_l2"] = _scores(sp, t_db, t_q, times, tod)
    return res


def write_report(path: Path, result: dict) -> None:
    lines = ["# Synthetic city benchmark", "", f"Command: `{result['command']}`", ""]
    g = result.get("generation")
    if g:
        lines += [
            f"## Generation (seed {result['seed']}, {result['settings_note']})",
            "",
            f"- {g['images']} images: **{g['wall_s']} s wall**, {g['cpu_s']} s CPU "
            f"(process + {g['workers']} workers); load average {g['load_avg_before']} → "
            f"{g['load_avg_after']} on {os.cpu_count()} cores (shared machine)",
            "",
        ]
    lines += [
        "## Geometry",
        "",
        "| split | #db | #q | q with db ≤25 m | q with db ≤10 m | "
        "min db distance to other splits (m) |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in result["geometry"].items():
        lines.append(
            f"| {name} | {e['num_db']} | {e['num_q']} | {e['q_with_pos_25m']:.3f} | "
            f"{e['q_with_pos_10m']:.3f} | "
            f"{e.get('min_db_dist_to_other_splits_m', float('nan')):.1f} |"
        )
    lines += ["", "## A real task (Recall@N, %)", "",
              "| split | method | R@1 | R@5 | R@10 | R@20 | R@1 day | R@1 dusk | R@1 night |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for task in result["tasks"]:
        for method, r in task.items():
            if isinstance(r, dict) and "1" in r:
                keys = [str(n) for n in NS] + ["1_day", "1_dusk", "1_night"]
                cells = " | ".join(f"{100 * r[k]:.1f}" if k in r else "–" for k in keys)
                lines.append(f"| {task['split']} | {method} | {cells} |")
        lines.append(f"| {task['split']} | chance (random ranking) | "
                     f"{100 * task['chance_r1']:.1f} | | | | | | |")  # fmt: skip
    counts = "; ".join(f"{t['split']}: " + ", ".join(f"{k} {v}" for k, v in
                       t["queries_by_time"].items()) for t in result["tasks"])  # fmt: skip
    lines += [
        "",
        "Random VGG16 (weights none, init_seed 0) local features at conv5_3; NetVLAD "
        "centroids from k-means on 50 descriptors of each of 100 training database "
        "images. Target: VGG16+NetVLAD R@1 within 10–50 % on pitts30k-test; thumbnails "
        f"clearly below 60 %. Queries by time of day: {counts}. Chance: the expected R@1 of a "
        "random ranking (mean fraction of database images within 25 m).",
        "",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/bench_synthetic"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="skip generation, use --out as is")
    ap.add_argument("--settings", default=None, help="CitySettings overrides (JSON)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clusters", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/synthetic.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(1)  # k-means repeats exactly with one thread
    settings = (
        CitySettings.from_dict(json.loads(args.settings)) if args.settings else CitySettings()
    )
    note = f"CitySettings overrides {args.settings}" if args.settings else "default CitySettings"
    result: dict = {
        "seed": args.seed,
        "settings_note": note,
        "command": shlex.join([".venv/bin/python", "benchmarks/bench_synthetic.py", *sys.argv[1:]]),
        "settings": settings.to_dict(),
    }
    if not args.reuse:
        result["generation"] = measure_generation(args.out, args.seed, settings, args.workers)
        print(result["generation"], flush=True)
    result["geometry"] = geometry(args.out)
    size = (settings.image_height, settings.image_width)
    run = (args.clusters, size, args.seed, settings)
    result["tasks"] = [real_task(args.out, "pitts30k", "test", "train", *run)]
    print(result["tasks"][-1], flush=True)
    result["tasks"].append(real_task(args.out, "tokyotm", "val", "train", *run))
    print(result["tasks"][-1], flush=True)
    write_report(args.results, result)
    with atomic_path(args.results.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
