"""The GPU path on a real GPU, in one command (issue 14, item 3).

    python benchmarks/gpu_check.py                 # on a CUDA machine, ≤ 5 minutes on one GPU
    python benchmarks/gpu_check.py --dry --out X   # CPU only, tiny sizes (what CI runs)

It writes its own place data (smooth random images on a street, one database image and one
query per place, 30 m apart: every query has one positive and every other place is a negative),
then, with the code the pipeline runs (icsa.train.run.prepare_trainer, iter_descriptors, search):

1. trains ``--steps`` steps of VGG16 + ICSA + NetVLAD at 480×640, lowest trained block 5,
   with and without the frozen-prefix cache (CUDA AMP: bfloat16 where the GPU has it);
2. measures extraction img/s (decoding with workers into pinned memory, and the model alone);
3. checks that CUDA descriptors (float32 and the bfloat16 fast path) agree with the CPU's;
4. times an exact search of 7,000 queries in 10,000 descriptors of 32,768 floats on the GPU
   and checks its top-20 against the CPU's faiss on a subset.

The numbers go to ``--out`` (default ``benchmarks/results/gpu.md``) and beside it as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsa.data import ImageDataset, load_split  # noqa: E402
from icsa.data.dbstruct import DbStruct, write_dbstruct  # noqa: E402
from icsa.evaluate.extract import iter_descriptors  # noqa: E402
from icsa.evaluate.search import search  # noqa: E402
from icsa.models import build_model  # noqa: E402
from icsa.spec import ModelSpec, RunSpec  # noqa: E402
from icsa.train.job import RunContext  # noqa: E402
from icsa.train.run import prepare_trainer  # noqa: E402
from icsa.train.settings import TrainSettings  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    image: tuple[int, int]  # (H, W)
    train_places: int  # steps = train_places / 4
    val_places: int
    search: tuple[int, int, int]  # database rows, queries, dim
    cpu_queries: int  # queries searched on the CPU as the reference
    agree_images: int  # images described on both CPU and GPU
    workers: int


FULL = Sizes((480, 640), 200, 64, (10_000, 7_000, 32_768), 500, 16, 8)
DRY = Sizes((32, 48), 12, 8, (300, 100, 512), 100, 4, 0)


def _image(args: tuple[Path, int, int, int, int]) -> None:
    path, place, jitter, h, w = args
    rng = np.random.default_rng([place, 0])
    base = rng.random((h // 32 + 2, w // 32 + 2, 3)) * 255  # a place's coarse pattern
    shift = np.random.default_rng([place, jitter]).integers(0, 3)
    img = Image.fromarray(base[shift:, shift:].astype(np.uint8)).resize((w, h), Image.BILINEAR)
    noise = np.random.default_rng([place, jitter, 1]).normal(0, 8, (h, w, 3))
    pixels = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def make_places(root: Path, sizes: Sizes) -> None:
    """pitts30k-shaped train and val splits (netvlad layout) of synthetic places."""
    h, w = sizes.image
    jobs, first = [], 0
    for split, places in (("train", sizes.train_places), ("val", sizes.val_places)):
        ids = range(first, first + places)
        first += places
        db = [f"db/{p:05d}.jpg" for p in ids]
        q = [f"q{p:05d}.jpg" for p in ids]
        utm = np.array([[30.0 * p, 0.0] for p in ids])
        struct = DbStruct(split, db, utm, q, utm + [3.0, 0.0], places, places, 25.0, 625.0, 100.0)
        write_dbstruct(root / "datasets" / f"pitts30k_{split}.mat", struct)
        jobs += [(root / n, p, 0, h, w) for n, p in zip(db, ids)]
        jobs += [(root / "queries_real" / n, p, 1, h, w) for n, p in zip(q, ids)]
    (root / "db").mkdir(parents=True)
    (root / "queries_real").mkdir()
    with ProcessPoolExecutor(max(1, sizes.workers)) as pool:
        list(pool.map(_image, jobs, chunksize=16))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_spec(sizes: Sizes, block: str | int = 5) -> ModelSpec:
    return ModelSpec("vgg16", "icsa", 64, sizes.image, "none", 0, lowest_trained_block=str(block))


def _model(sizes: Sizes, block: str | int = 5):
    return build_model(**_model_spec(sizes, block).build_args())


def train_check(root: Path, work: Path, sizes: Sizes, device: torch.device, cache: bool) -> dict:
    """One epoch of ``train_places / 4`` steps; the prefix cache (if any) is built first."""
    train, val = load_split(root, "pitts30k", "train"), load_split(root, "pitts30k", "val")
    settings = TrainSettings(
        epochs=1, lr=1e-3, eval_batch_size=32, num_workers=sizes.workers, amp=True,
        validate_untrained=False, prefix_cache=cache, fast_inference="auto", patience=0,
    )  # fmt: skip
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    spec = RunSpec("pitts30k", _model_spec(sizes), settings, seed=0)
    context = RunContext(work / f"cache{int(cache)}", device, enable_dvclive=False)
    trainer = prepare_trainer(_model(sizes), train, val, spec, context)
    _sync(device)
    t1 = time.perf_counter()
    stats = trainer.train_epoch(1)
    _sync(device)
    t2 = time.perf_counter()
    on_gpu = trainer.sources.train_db.on_device is not None
    return {
        "prefix_cache": cache,
        "prefix_cache_on_gpu": on_gpu,
        "amp_dtype": trainer.amp_dtype,
        "setup_s": t1 - t0,
        "epoch_s": t2 - t1,
        "steps": stats["steps"],
        "step_s": stats["train_s"] / max(stats["steps"], 1),
        "mining_refresh_s": stats["cache_refresh_s"],
        "loss": stats["loss_sum"] / max(stats["steps"], 1),
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else 0.0,
    }


def _describe(model, paths, sizes: Sizes, device, fast: bool) -> tuple[np.ndarray, float]:
    dataset = ImageDataset(paths, sizes.image)
    _sync(device)
    t0 = time.perf_counter()
    rows = [d for _, d in iter_descriptors(model, dataset, 32, sizes.workers, device, fast)]
    _sync(device)
    return np.concatenate(rows), time.perf_counter() - t0


def extraction_check(root: Path, sizes: Sizes, device: torch.device) -> dict:
    """img/s from files, img/s of the model alone, and CPU–GPU agreement of descriptors."""
    split = load_split(root, "pitts30k", "train")
    paths = split.db_paths + split.q_paths
    model = _model(sizes, "none")
    fast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    _describe(model, paths[:32], sizes, device, fast)  # warm-up (cuDNN's algorithm search)
    out = {"images": len(paths), "fast_path": fast}
    for name, use_fast in (("float32", False), ("bfloat16", True)):
        if use_fast and not fast:
            continue
        _, seconds = _describe(model, paths, sizes, device, use_fast)
        out[f"files_img_s_{name}"] = len(paths) / seconds
        batch = torch.randn(32, 3, *sizes.image, device=device)
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, use_fast):
            model.to(device).eval()(batch)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(8):
                model(batch)
            _sync(device)
        out[f"model_img_s_{name}"] = 8 * len(batch) / (time.perf_counter() - t0)
    few = paths[: sizes.agree_images]
    ref, _ = _describe(model, few, sizes, torch.device("cpu"), False)
    for name, use_fast in (("float32", False), ("bfloat16", True)):
        if use_fast and not fast:
            continue
        got, _ = _describe(model, few, sizes, device, use_fast)
        out[f"agree_{name}"] = {
            "max_abs_diff": float(np.abs(got - ref).max()),
            "min_cosine": float((got * ref).sum(1).min()),
            # the scale: how far apart the CPU's descriptors of different images are (a random
            # VGG16 maps all images to nearly one descriptor, so this is small)
            "median_abs_diff_between_images": float(np.median(np.abs(ref[1:] - ref[:-1]))),
            **_feature_agreement(few[:4], sizes, device, use_fast),
        }
    return out


@torch.inference_mode()
def _feature_agreement(paths, sizes: Sizes, device: torch.device, fast: bool) -> dict:
    """Blocks 1–4 of VGG16 (the frozen prefix of block 5) on CPU float32 and on ``device``:
    relative error, beside the relative distance between two images' features."""
    model = _model(sizes).eval()
    dataset = ImageDataset(paths, sizes.image)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    ref = model.frozen_prefix(images).flatten(1)
    with torch.autocast(device.type, torch.bfloat16, fast):
        got = model.to(device).frozen_prefix(images.to(device)).float().cpu().flatten(1)
    norm = ref.norm(dim=1)
    return {
        "prefix_relative_error": float(((got - ref).norm(dim=1) / norm).max()),
        "prefix_relative_distance_between_images": float(((ref[1:] - ref[:-1]).norm(dim=1)
                                                           / norm[1:]).min()),
    }  # fmt: skip


def search_check(sizes: Sizes, device: torch.device) -> dict:
    """Exact top-20 on the GPU for the whole query set; the CPU (faiss) on a subset."""
    n_db, n_q, dim = sizes.search
    gen = torch.Generator().manual_seed(0)
    db = torch.nn.functional.normalize(torch.randn(n_db, dim, generator=gen), dim=1).numpy()
    q = torch.nn.functional.normalize(torch.randn(n_q, dim, generator=gen), dim=1).numpy()
    # queries near database rows, as in retrieval: a true neighbour to find
    near = db[np.arange(n_q // 2) % n_db] + 0.3 * q[: n_q // 2]
    q[: n_q // 2] = near / np.linalg.norm(near, axis=1, keepdims=True)
    out = {"db": n_db, "queries": n_q, "dim": dim, "k": 20}
    t0 = time.perf_counter()
    ref_d, ref_i = search(db, q[: sizes.cpu_queries], 20, use_gpu=False)
    out["cpu_s_per_1000_queries"] = (time.perf_counter() - t0) / sizes.cpu_queries * 1000
    if device.type != "cuda":
        return out
    search(db, q[:256], 20, use_gpu=True)  # warm-up
    t0 = time.perf_counter()
    gpu_d, gpu_i = search(db, q, 20, use_gpu=True)
    out["gpu_s"] = time.perf_counter() - t0
    out["gpu_s_per_1000_queries"] = out["gpu_s"] / n_q * 1000
    sub_i, sub_d = gpu_i[: sizes.cpu_queries], gpu_d[: sizes.cpu_queries]
    out["same_top20_lists"] = float(np.mean((sub_i == ref_i).all(1)))
    out["same_top1"] = float(np.mean(sub_i[:, 0] == ref_i[:, 0]))
    out["max_distance_diff"] = float(np.abs(sub_d - ref_d).max())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.md"))
    args = parser.parse_args(argv)
    if not args.dry and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --dry for the CPU-only check")
    sizes = DRY if args.dry else FULL
    device = torch.device("cpu") if args.dry else torch.device("cuda")
    torch.manual_seed(0)
    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
                    "cpu_threads": torch.get_num_threads(), "dry": args.dry},
    }  # fmt: skip
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp) / "places", Path(tmp) / "train"
        make_places(root, sizes)
        result["train"] = [train_check(root, work, sizes, device, c) for c in (True, False)]
        result["extract"] = extraction_check(root, sizes, device)
    result["search"] = search_check(sizes, device)
    result["total_s"] = time.perf_counter() - t_all
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.write_text(render(result, sizes))
    print(args.out.read_text())
    return 0


def render(r: dict, sizes: Sizes) -> str:
    """The Markdown record."""
    cached, plain = r["train"]
    lines = [
        "# GPU check (`benchmarks/gpu_check.py`)", "",
        f"Machine: {r['machine']}. Total {r['total_s']:.0f} s.", "",
        f"## Training: VGG16 + ICSA + NetVLAD (K = 64), block 5, {sizes.image[0]}×"
        f"{sizes.image[1]}, batch 4 × (1 + 1 + 10)", "",
        "| prefix cache | on GPU | AMP | setup s | steps | s/step | mining refresh s | "
        "epoch s | peak GPU MB |", "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for t in (cached, plain):
        lines.append(
            f"| {t['prefix_cache']} | {t['prefix_cache_on_gpu']} | {t['amp_dtype']} | "
            f"{t['setup_s']:.1f} | {t['steps']} | {t['step_s']:.3f} | "
            f"{t['mining_refresh_s']:.1f} | {t['epoch_s']:.1f} | {t['peak_gpu_mb']:.0f} |"
        )
    lines.append(f"\nTraining steps, cache vs none: {plain['step_s'] / cached['step_s']:.1f}×.")
    e = r["extract"]
    lines += ["", "## Extraction (VGG16 + NetVLAD, whole model)", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in e.items() if k.endswith("img_s_float32")]
    lines += [f"- {k}: {v:.1f}" for k, v in e.items() if k.endswith("img_s_bfloat16")]
    lines += [f"- CPU vs device, {k[6:]}: {v}" for k, v in e.items() if k.startswith("agree_")]
    s = r["search"]
    lines += ["", f"## Exact search: {s['queries']} × {s['db']} × {s['dim']}, top-{s['k']}", ""]
    lines += [f"- {k}: {v:.4g}" for k, v in s.items() if isinstance(v, float)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
