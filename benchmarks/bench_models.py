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


def time_models(
    models: dict[str, PlaceModel], x: torch.Tensor, rounds: int
) -> tuple[dict[str, list], dict[str, list]]:
    """Interleaved wall and process-CPU times (ms) of one forward per model per round."""
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(x)
        for _ in range(rounds):
            for name, model in models.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                model(x)
                wall[name].append((time.perf_counter() - start) * 1000.0)
                cpu[name].append((time.process_time() - start_cpu) * 1000.0)
    return wall, cpu


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
        "| module | params | size kB | device | batch | clock | median ms | IQR ms | repeats |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in result["modules"]:
        lines.append(
            f"| {r['module']} | {r['params']} | {r['size_kb']:.1f} | {r['device']} | "
            f"{r['batch_size']} | {r['clock']} | {r['time_ms_median']:.4f} | "
            f"{r['time_ms_iqr']:.4f} | {r['repeats']} |"
        )
    whole = result["whole_model"]
    lines += [
        "",
        f"## Whole VGG16 + attention + NetVLAD (K={whole['clusters']}) forward, "
        f"{whole['image_size'][0]}×{whole['image_size'][1]} image, batch 1, {whole['device']}",
        "",
        f"{whole['rounds']} interleaved rounds; ratio = median / median of `none`. Wall time "
        "includes waiting for the shared CPU; CPU time is the work done by this process.",
        "",
        "| attention | wall median ms | wall IQR | wall ratio "
        "| CPU median ms | CPU IQR | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in whole["rows"]:
        lines.append(
            f"| {r['attention']} | {r['time_ms_median']:.1f} | {r['time_ms_iqr']:.1f} | "
            f"{r['ratio_to_none']:.3f} | {r['cpu_ms_median']:.1f} | {r['cpu_ms_iqr']:.1f} | "
            f"{r['cpu_ratio_to_none']:.3f} |"
        )
    return "\n".join(lines + ["", result["conclusion"], ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="1 makes CPU time meaningful")
    parser.add_argument("--repeats", type=int, default=100, help="module timings per setting")
    parser.add_argument("--rounds", type=int, default=5, help="whole-model interleaved rounds")
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
            reps = args.repeats if batch == 1 else max(10, args.repeats // 5)
            for clock in ("wall", "cpu") if device == "cpu" else ("wall",):
                modules += measure_modules(
                    MODULES, batch_size=batch, repeats=reps, device=device, clock=clock
                )

    size = tuple(args.image_size)
    models = model_variants(size, args.clusters)
    x = torch.randn(1, 3, *size)
    wall, cpu = time_models(models, x, args.rounds)
    base, base_cpu = float(np.median(wall["none"])), float(np.median(cpu["none"]))
    rows = []
    for name in models:
        median, iqr = summarise(wall[name])
        cpu_median, cpu_iqr = summarise(cpu[name])
        rows.append(
            {
                "attention": name,
                "time_ms_median": median,
                "time_ms_iqr": iqr,
                "ratio_to_none": median / base,
                "cpu_ms_median": cpu_median,
                "cpu_ms_iqr": cpu_iqr,
                "cpu_ratio_to_none": cpu_median / base_cpu,
            }
        )
    # Paired per-round differences of CPU time cancel load drift between rounds.
    diff, diff_iqr = summarise(np.subtract(cpu["icsa-folded"], cpu["none"]))
    # Only a slowdown beyond the paired spread would be a cost (a speed-up is noise here).
    measurable = diff > diff_iqr
    conclusion = (
        f"Folded ICSA minus none, CPU time paired per round: median {diff:+.2f} ms "
        f"(IQR {diff_iqr:.2f} ms; {diff / base_cpu:+.1%} of the forward): "
        + ("a measurable cost." if measurable else "no measurable cost")
        + ("" if measurable else " (the folded model is the plain one, other conv5_3 weights).")
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
