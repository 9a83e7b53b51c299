"""Benchmark: attention modules alone (paper Table 2 setting) and the whole VGG16+NetVLAD forward.

Part 1 times each attention module on a 512×30×40 feature map (batch 1 and 16; CPU, and CUDA
when present) with :func:`icsa.analysis.efficiency.measure_modules`.
Part 2 times the whole model (VGG16 → attention → NetVLAD, K=64) at a reduced image size
(default 240×320, batch 1, CPU) for every attention module and for ICSA folded into conv5_3.
The models share one backbone and one NetVLAD, and the runs are interleaved round-robin so that
machine load drifts hit every variant alike; each variant is reported as a ratio to ``none``.

Writes ``benchmarks/results/models.json`` and ``models.md``. Run:

    .venv/bin/python benchmarks/bench_models.py --threads 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from icsa.analysis.efficiency import environment, measure_modules, summarise
from icsa.io import atomic_path, write_json
from icsa.models import ATTENTIONS, PlaceModel, build_attention, build_model, fold_attention

MODULES = ("none", "ia", "icsa", "ch", "sp", "se", "cbam", "icsa-folded")


def model_variants(image_size: tuple[int, int], clusters: int) -> dict[str, PlaceModel]:
    """One PlaceModel per attention name (shared backbone/NetVLAD) plus folded ICSA."""
    base = build_model("vgg16", "none", clusters, image_size).eval()
    c, h, w = base.feature_shape
    variants = {}
    for name in ATTENTIONS:
        att = build_attention(name, c, h, w)
        config = {**base.config, "attention": name}
        variants[name] = PlaceModel(base.backbone, att, base.netvlad, config, base.feature_shape)
    icsa = variants["icsa"]
    with torch.no_grad():  # a "trained" ICSA: non-trivial channel weights, positive spatial
        icsa.attention.channel_weight.uniform_(0.5, 1.5)
        icsa.attention.spatial_weight.uniform_(0.5, 1.5)
    variants["icsa-folded"] = fold_attention(icsa).eval()
    return variants


def time_models(models: dict[str, PlaceModel], x: torch.Tensor, rounds: int) -> dict[str, list]:
    """Interleaved wall times (ms) of one forward per model per round."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(x)
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                if x.device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def to_markdown(result: dict) -> str:
    meta = result["metadata"]
    lines = [
        "# Model benchmarks (`benchmarks/bench_models.py`)",
        "",
        f"torch {meta['torch']}, {meta['threads']} thread(s), CPU `{meta['cpu']}` "
        f"({meta['cpu_count']} cores, shared with other jobs), CUDA: {meta['cuda_device']}.",
        f"Command: `{meta['command']}`",
        "",
        "## Attention modules alone at 512×30×40 (paper Table 2 setting)",
        "",
        "| module | params | size kB | device | batch | median ms | IQR ms | repeats |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["modules"]:
        lines.append(
            f"| {r['module']} | {r['params']} | {r['size_kb']:.1f} | {r['device']} | "
            f"{r['batch_size']} | {r['time_ms_median']:.4f} | {r['time_ms_iqr']:.4f} | "
            f"{r['repeats']} |"
        )
    whole = result["whole_model"]
    lines += [
        "",
        f"## Whole VGG16 + attention + NetVLAD (K={whole['clusters']}) forward, "
        f"{whole['image_size'][0]}×{whole['image_size'][1]} image, batch 1, {whole['device']}",
        "",
        f"{whole['rounds']} interleaved rounds; ratio = median / median of `none`.",
        "",
        "| attention | median ms | IQR ms | ratio to none |",
        "|---|---:|---:|---:|",
    ]
    for r in whole["rows"]:
        lines.append(
            f"| {r['attention']} | {r['time_ms_median']:.1f} | {r['time_ms_iqr']:.1f} | "
            f"{r['ratio_to_none']:.3f} |"
        )
    return "\n".join(lines + ["", result["conclusion"], ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100, help="module timings per setting")
    parser.add_argument("--rounds", type=int, default=8, help="whole-model interleaved rounds")
    parser.add_argument("--image-size", type=int, nargs=2, default=(240, 320))
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    modules = []
    for device in devices:
        for batch in (1, 16):
            reps = args.repeats if batch == 1 else max(10, args.repeats // 4)
            modules += measure_modules(MODULES, batch_size=batch, repeats=reps, device=device)

    size = tuple(args.image_size)
    models = model_variants(size, args.clusters)
    x = torch.randn(1, 3, *size)
    times = time_models(models, x, args.rounds)
    base = float(np.median(times["none"]))
    rows = []
    for name, t in times.items():
        median, iqr = summarise(t)
        rows.append(
            {
                "attention": name,
                "time_ms_median": median,
                "time_ms_iqr": iqr,
                "ratio_to_none": median / base,
            }  # fmt: skip
        )
    # Paired per-round differences cancel load drift between rounds.
    paired = np.subtract(times["icsa-folded"], times["none"])
    diff, diff_iqr = summarise(paired)
    measurable = abs(diff) > diff_iqr
    conclusion = (
        f"Folded ICSA minus none, paired per round: median {diff:+.2f} ms (IQR {diff_iqr:.2f} ms, "
        f"{diff / base:+.1%} of the forward): "
        + ("measurable." if measurable else "within the run-to-run spread, no measurable cost")
        + (
            ""
            if measurable
            else " (the folded model *is* the plain one with other conv5_3 weights)."
        )
    )
    cmd = f"python benchmarks/bench_models.py --threads {args.threads} --repeats {args.repeats} "
    cmd += f"--rounds {args.rounds} --image-size {size[0]} {size[1]} --clusters {args.clusters}"
    result = {
        "metadata": {**environment(), "command": cmd},
        "modules": modules,
        "whole_model": {
            "backbone": "vgg16",
            "clusters": args.clusters,
            "image_size": list(size),
            "batch_size": 1,
            "device": "cpu",
            "rounds": args.rounds,
            "rows": rows,
        },  # fmt: skip
        "conclusion": conclusion,
    }
    out = Path(args.out_dir)
    write_json(out / "models.json", result)
    with atomic_path(out / "models.md") as tmp:
        tmp.write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
