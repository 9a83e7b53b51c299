"""`icsa plan`: disk, memory and time of every job a config asks for, before any runs.

    icsa plan [--configfile config/pittsburgh.yaml ...] [--gflops N | --gpu-check FILE]
              [--json OUT]

The config is config/config.yaml with each --configfile merged over it, as Snakemake merges
them, validated against the workflow's schema (its defaults filled in). The rates: --gflops, or
--gpu-check (what benchmarks/gpu_check.py measured on a GPU; benchmarks/results/gpu.json is the
default for a ``device: cuda`` config), or a one-second convolution calibration on this CPU.
A training whose prefix cache does not fit ``train.prefix_cache_budget_mb`` is named, with the
time recomputing costs it; so is a ``resources:`` value below what the plan needs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from icsa.errors import InputError

DEFAULT_CONFIG = Path("config/config.yaml")
SCHEMA = Path("workflow/schemas/config.schema.yaml")
GPU_RECORD = Path("benchmarks/results/gpu.json")  # used for `device: cuda` configs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help="disk, memory and time of a config's jobs",
                              description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--configfile", type=Path, nargs="+", default=[],
                   help="merged over config/config.yaml, in order")  # fmt: skip
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--gflops", type=float, help="the compute rate to assume (GFLOP/s)")
    rate.add_argument("--gpu-check", type=Path, help="benchmarks/gpu_check.py's JSON record")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the calibration")
    p.add_argument("--json", type=Path, help="also write the plan as JSON here")
    p.set_defaults(func=_plan)


def load_config(paths: list[Path]) -> dict[str, Any]:
    import yaml
    from snakemake.utils import update_config, validate  # Snakemake's own merge and schema

    config: dict[str, Any] = {}
    for path in [DEFAULT_CONFIG, *paths]:
        if not path.is_file():
            raise InputError(f"{path}: config file not found (run from the repository root)")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a YAML mapping at the top level")
        update_config(config, data)
    # The workflow's schema, with its defaults filled in (as the Snakefile validates).
    if not SCHEMA.is_file():
        raise InputError(f"{SCHEMA}: not found (run from the repository root)")
    validate(config, str(SCHEMA.resolve()))
    return config


def _plan(args: argparse.Namespace) -> int:
    from icsa import plan
    from icsa.io import write_json
    from icsa.utils import set_threads

    config = load_config(args.configfile)
    gpu_record = args.gpu_check
    if gpu_record is None and args.gflops is None and config.get("device") == "cuda":
        gpu_record = GPU_RECORD if GPU_RECORD.is_file() else None
    if args.gflops is not None:
        if args.gflops <= 0:
            raise InputError(f"--gflops = {args.gflops}: expected a rate > 0")
        rates = plan.Rates(args.gflops, source="--gflops")
    elif gpu_record is not None:
        if not gpu_record.is_file():
            raise InputError(f"--gpu-check {gpu_record}: not found (benchmarks/gpu_check.py)")
        record = json.loads(gpu_record.read_text())
        rates = plan.gpu_check_rates(record, f"{gpu_record} ({record['machine']['gpu']})")
    else:
        set_threads(args.threads)
        rates = plan.Rates(plan.measure_cpu_gflops(), source="this CPU (3×3 convolutions)")
    planned = plan.plan(config, rates)
    planned["resources"] = plan.check_resources(config, planned, plan.machine_memory_gb())
    print(render(planned))
    if args.json:
        write_json(args.json, planned)
    return 0


def render(planned: dict[str, Any]) -> str:
    r = planned["rates"]
    floors = (
        f"; a training step ≥ {r['step_floor_s']:.3f} s, decoding {r['decode_img_s']:.0f} img/s"
        if r["step_floor_s"] else "; compute only (no measured floors)"
    )  # fmt: skip
    # The run column fits the longest id (an aggregator suffix lengthens it).
    w = max([34] + [len(t["run"]) for t in planned["trainings"]])
    lines = [f"Rate: {r['gflops']:,.0f} GFLOP/s from {r['source']}{floors}.", "",
             "Training runs:",
             f"{'run':{w}} {'data':10} {'prefix cache GB':>20} {'peak mem GB':>12} "
             f"{'epoch h cached / recompute':>27} {'run h':>8}"]  # fmt: skip
    for r in planned["trainings"]:
        cache = f"{r['prefix_cache_gb']['train']:.1f}+{r['prefix_cache_gb']['val']:.1f}"
        lines.append(
            f"{r['run']:{w}} {r['counts']['source'][:10]:10} {cache:>20} {r['peak_ram_gb']:>12.1f} "
            f"{r['epoch_h']:>13.2f} / {r['epoch_h_recompute']:<11.2f} {r['run_h']:>8.1f}"
        )
        if planned.get("device") == "cuda" and r["mining_cache_gb"] > 1:
            lines.append(
                f"  mining cache {r['mining_cache_gb']:.1f} GB (in the peak): in GPU memory "
                "where it fits in half the free memory, else in host memory"
            )
        if r["over_budget"]:
            lines.append(
                f"  ! over train.prefix_cache_budget_mb ({r['prefix_cache_budget_gb']:.1f} GB): "
                f"{', '.join(r['over_budget'])} inputs are recomputed every step"
            )
    lines += ["", "Extractions:"]
    for e in planned["extractions"]:
        if not e["images"]:
            lines.append(f"{e['run']:{w}} {e['evalset']:16} {e['source']}")
            continue
        lines.append(f"{e['run']:{w}} {e['evalset']:16} {e['images']:>8} images "
                     f"{e['descriptors_gb']:>7.2f} GB {e['hours']:>7.2f} h")  # fmt: skip
    t, x = planned["trainings"], planned["extractions"]
    lines += [
        "",
        f"Totals: {len(t)} trainings, {sum(r['run_h'] for r in t):,.1f} h at most "
        f"({t[0]['epochs'] if t else 0} epochs each, no early stop); prefix caches "
        f"{sum(sum(r['prefix_cache_gb'].values()) for r in t):,.1f} GB (in each run's state/); "
        f"descriptors {sum(e['descriptors_gb'] for e in x):,.1f} GB; "
        f"{sum(e['hours'] for e in x):,.1f} h of extraction.",
    ]
    lines += [f"! {note}" for note in planned["resources"]] or ["resources: enough for the plan"]
    return "\n".join(lines)
