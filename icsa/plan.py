"""What each job of a config will need before it runs: disk, memory and time (issue 14).

``icsa plan --configfile config/pittsburgh.yaml`` sizes every training and extraction that the
config's run tables ask for, from

- the split sizes: read from the dataset when its root exists, else the published counts
  (:data:`PUBLISHED_COUNTS`: Arandjelović et al., NetVLAD, CVPR 2016, Sec. 5.1 and Table 1 of
  its supplement; Torii et al. 2015 for Tokyo 24/7);
- the model: prefix shape, descriptor size and FLOPs per image of the frozen and the trained
  blocks, counted by ``torch.utils.flop_counter`` on the ``meta`` device (no memory, no time;
  for the DINOv2 ViTs the prefix is the token map with its CLS row, icsa/models/vit.py);
- a rate in GFLOP/s: ``--gflops``, or measured here (a short convolution calibration on this
  machine's CPU), or the GPU rate ``benchmarks/gpu_check.py`` measured (its JSON record, which
  also gives a measured floor per training step and the decoding images/s).

The arithmetic follows the training loop (icsa/train/loop.py): the prefix cache is built once
(every train and val image through the frozen blocks), each epoch refreshes the mining cache
every ``cache_refresh`` queries (the whole training database and the chunk's queries), takes
``ceil(queries / batch_size)`` steps of ``batch_size × (2 + neg_kept)`` inputs (forward and
backward ≈ 3 forwards of the trained blocks; with ``train.step_chunk`` one more, and the
activations of ``step_chunk`` inputs instead of the whole step's) and validates. Recomputing
(no cache, or a cache over its budget) pays the frozen blocks' forward for every one of those
inputs, and decodes them. The multisimilarity regime (icsa/train/multisimilarity.py) has no
mining cache and takes ``ceil(training images / (P × K))`` steps of ``P × K`` inputs.
Times assume every query is trainable and no early stop; without measured floors they ignore
decoding and host overhead, so they are lower bounds of the order of the truth
(benchmarks/results/train.md and gpu.md hold measured ones).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from icsa.pipeline import (
    dataset_layout,
    run_spec,
    run_tables,
    split_evalset,
    table_spec,
    validation_split,
)
from icsa.spec import ModelSpec

# (database images, queries) per split, as published (module docstring).
PUBLISHED_COUNTS: dict[str, dict[str, tuple[int, int]]] = {
    "pitts30k": {"train": (10_000, 7_416), "val": (10_000, 7_608), "test": (10_000, 6_816)},
    "pitts250k": {"train": (91_464, 7_824), "val": (78_648, 7_608), "test": (83_952, 8_280)},
    "tokyo247": {"test": (75_984, 315)},
}
GB = 1e9


@dataclass(frozen=True)
class Rates:
    """How fast the machine is: arithmetic (GFLOP/s), and where measured, the floor of a
    training step (host work: mining, Python) and the images/s of decoding."""

    gflops: float
    step_floor_s: float = 0.0
    decode_img_s: float = math.inf
    source: str = ""


@dataclass(frozen=True)
class ModelCosts:
    """Per image: frozen-prefix values, descriptor size, GFLOP of the frozen and trained parts,
    and bytes of the trained part's activations (what the backward pass keeps)."""

    prefix_values: int
    descriptor_dim: int
    prefix_gflop: float
    trained_gflop: float
    activation_bytes: int
    trainable_params: int
    params: int


def model_costs(m: ModelSpec) -> ModelCosts:
    """Count, on the meta device, what one image costs this model (seed and weights aside)."""
    return _model_costs(replace(m, weights="none", init_seed=0))


@functools.cache
def _model_costs(m: ModelSpec) -> ModelCosts:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from icsa.models import build_model

    model = build_model(**m.build_args()).to("meta")  # built on the CPU: random init is cheap
    images = torch.zeros(1, 3, *m.image_size, device="meta")
    with FlopCounterMode(display=False) as flops:
        prefix = model.frozen_prefix(images)
    prefix_flops = flops.get_total_flops()
    activations = []
    hooks = [
        mod.register_forward_hook(lambda _m, _i, out: activations.append(out.numel()))
        for mod in model.modules()
        if not list(mod.children())
    ]
    with FlopCounterMode(display=False) as flops:
        desc = model.forward_from_prefix(prefix)
    for hook in hooks:
        hook.remove()
    # The frozen modules ran inside frozen_prefix before the hooks existed: what was recorded
    # is the trained part only.
    return ModelCosts(
        prefix_values=prefix[0].numel(),
        descriptor_dim=desc.shape[1],
        prefix_gflop=prefix_flops / 1e9,
        trained_gflop=flops.get_total_flops() / 1e9,
        activation_bytes=4 * sum(activations),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        params=sum(p.numel() for p in model.parameters()),
    )


def split_counts(config: dict[str, Any], dataset: str, split: str) -> tuple[int, int, str]:
    """(database, queries, source) of one split: the data if present, else published."""
    root = Path(config["datasets"][dataset]["root"])
    if root.is_dir():
        return _read_counts(str(root), dataset, split, dataset_layout(config, dataset))
    if split in PUBLISHED_COUNTS.get(dataset, {}):
        return (*PUBLISHED_COUNTS[dataset][split], "published")
    return 0, 0, f"unknown: {root} missing and no published count"


@functools.cache
def _read_counts(root: str, dataset: str, split: str, layout: str) -> tuple[int, int, str]:
    """Each split is read once per plan, however many runs use it."""
    from icsa.data import load_split

    db = load_split(root, dataset, split, layout).db
    return db.num_db, db.num_q, root


def measure_cpu_gflops(seconds: float = 1.0) -> float:
    """This machine's convolution rate (VGG-like 3×3 convs, float32, torch's threads)."""
    import torch

    conv = torch.nn.Conv2d(128, 128, 3, padding=1)
    x = torch.randn(4, 128, 56, 56)
    flop = 2 * 128 * 128 * 9 * 56 * 56 * 4
    with torch.no_grad():
        conv(x)
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            conv(x)
            runs += 1
    return flop * runs / (time.perf_counter() - start) / 1e9


def gpu_check_rates(record: dict[str, Any], source: str) -> Rates:
    """Rates from gpu_check.py's record: GFLOP/s of its whole-model extraction (bfloat16
    where measured; images/s × the FLOPs of its model, VGG16 + ICSA + NetVLAD K = 64 at
    480×640), its cached training step as the step floor, and its decoding images/s."""
    e = record["extract"]
    rate = e.get("model_img_s_bfloat16") or e["model_img_s_float32"]
    decode = e.get("files_img_s_bfloat16") or e["files_img_s_float32"]
    c = model_costs(ModelSpec("vgg16", "icsa", 64, (480, 640), lowest_trained_block="5"))
    step = min(run["step_s"] for run in record["train"])
    return Rates(rate * (c.prefix_gflop + c.trained_gflop), step, decode, source)


def plan_training(config: dict[str, Any], run: str, rates: Rates) -> dict[str, Any]:
    """Disk, memory and time of one training run (module docstring)."""
    spec = run_spec(config, run)
    s, c = spec.recipe, model_costs(spec.model)
    t_db, t_q, source = split_counts(config, spec.dataset, "train")
    validation = validation_split(config)  # another dataset's split, or the training set's val
    v_db, v_q, _ = split_counts(config, *(split_evalset(validation) if validation else
                                          (spec.dataset, "val")))  # fmt: skip
    itemsize = 2 if s.prefix_cache_dtype == "float16" else 4
    per_image = c.prefix_values * itemsize
    train_bytes, val_bytes = (t_db + t_q) * per_image, (v_db + v_q) * per_image
    budget = s.prefix_cache_budget_mb * 2**20
    from icsa.train.prefix_cache import plan_prefix_cache  # the trainer's own rule

    fits = plan_prefix_cache({"train": t_db + t_q, "val": v_db + v_q}, per_image,
                             s.prefix_cache_budget_mb)  # fmt: skip
    cached_train, cached_val = (s.prefix_cache and fits[role] for role in ("train", "val"))
    if s.regime == "multisimilarity":
        # P places × K images a step, no mining cache; at most every training image is in a
        # place (cells with fewer than K images are dropped: icsa/train/places.py).
        refreshes, inputs = 0, s.ms_places_per_batch * s.ms_images_per_place
        steps = math.ceil((t_db + t_q) / inputs)
    else:
        refreshes = math.ceil(t_q / s.cache_refresh) if t_q else 0
        steps = math.ceil(t_q / s.batch_size)
        inputs = s.batch_size * (2 + s.neg_kept)
    chunked = 0 < s.step_chunk < inputs
    graph_inputs = s.step_chunk if chunked else inputs  # whose activations a backward holds
    full = c.prefix_gflop + c.trained_gflop

    r = rates

    def part_s(images: int, gflop: float, cached: bool) -> float:
        """Compute time, or decoding time where inputs are images and that is longer."""
        return max(images * gflop / r.gflops, 0.0 if cached else images / r.decode_img_s)

    def epoch_s(train_cached: bool, val_cached: bool) -> float:
        fwd_train = c.trained_gflop if train_cached else full
        refresh = part_s(t_db * refreshes + t_q, fwd_train, train_cached) if refreshes else 0.0
        # Forward and backward (2×) of the trained blocks, the frozen prefix's forward where
        # not cached, and with step_chunk the gradient cache's second forward.
        passes = 3 + (1 if chunked else 0)
        step_gflop = inputs * (passes * c.trained_gflop + (0 if train_cached else c.prefix_gflop))
        step = max(part_s(inputs, step_gflop / inputs, train_cached), r.step_floor_s)
        val = part_s(v_db + v_q, c.trained_gflop if val_cached else full, val_cached)
        return refresh + steps * step + val

    built = (t_db + t_q) * cached_train + (v_db + v_q) * cached_val
    build_s = part_s(built, c.prefix_gflop, False)
    # The mining cache: the training database's and one refresh chunk's descriptors. With CUDA
    # it lives in GPU memory where it fits in half the free memory, else in host memory
    # (icsa.train.loop.mining_cache_device).
    mining = 4 * c.descriptor_dim * (t_db + min(t_q, s.cache_refresh)) * bool(refreshes)
    ram = (
        4 * c.params + 8 * c.trainable_params  # weights; gradients and SGD momentum
        + mining + graph_inputs * c.activation_bytes + inputs * 4 * c.prefix_values  # a step
    )  # fmt: skip
    cached, recompute = epoch_s(cached_train, cached_val), epoch_s(False, False)
    over = [n for n, ok in (("train", cached_train), ("val", cached_val))
            if s.prefix_cache and not ok]  # fmt: skip
    return {
        "run": run,
        "counts": {"train": [t_db, t_q], "val": [v_db, v_q], "source": source},
        "prefix_cache_gb": {"train": train_bytes / GB, "val": val_bytes / GB},
        "prefix_cache_budget_gb": budget / GB,
        "over_budget": over,
        "peak_ram_gb": ram / GB,
        "mining_cache_gb": mining / GB,
        "epoch_h": cached / 3600,
        "epoch_h_recompute": recompute / 3600,
        "cache_build_h": build_s / 3600,
        "run_h": (build_s + s.epochs * cached) / 3600,
        "epochs": s.epochs,
    }


def plan_extraction(config: dict[str, Any], run: str, evalset: str, rates: Rates) -> dict:
    spec = run_spec(config, run)
    c = model_costs(spec.model)
    dataset, split = split_evalset(evalset)
    n_db, n_q, source = split_counts(config, dataset, split)
    itemsize = 2 if config.get("extract", {}).get("dtype") == "float16" else 4
    return {
        "run": run,
        "evalset": evalset,
        "images": n_db + n_q,
        "source": source,
        "descriptors_gb": (n_db + n_q) * c.descriptor_dim * itemsize / GB,
        "hours": max(
            (n_db + n_q) * (c.prefix_gflop + c.trained_gflop) / rates.gflops,
            (n_db + n_q) / rates.decode_img_s,
        )
        / 3600,
    }


def plan(config: dict[str, Any], rates: Rates) -> dict[str, Any]:
    """Every training and extraction the config's run tables need, sized."""
    pairs = {}
    for name in run_tables(config):
        spec = table_spec(config, name)
        for row in spec["rows"]:
            for run in row["runs"]:
                pairs.setdefault(run, set()).add(spec["evalset"])
    trainings = [plan_training(config, run, rates) for run in pairs]
    extractions = [
        plan_extraction(config, run, evalset, rates)
        for run, evalsets in pairs.items()
        for evalset in sorted(evalsets)
    ]
    return {"rates": dataclasses.asdict(rates), "trainings": trainings,
            "extractions": extractions, "device": config.get("device", "cpu")}  # fmt: skip


def machine_memory_gb() -> float:
    """This machine's memory in GB: physical memory, or the cgroup's limit where lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        pass
    return total / GB


def check_resources(
    config: dict[str, Any], planned: dict[str, Any], memory_gb: float | None = None
) -> list[str]:
    """Where the config's ``resources.train``/``resources.extract`` are below the plan, and,
    for a CPU config, the trainings whose peak memory exceeds ``memory_gb`` (this machine's:
    they would be killed for memory, as block 1 at 480×640 is on a 24 GB machine)."""
    res = config.get("resources", {})
    notes = []
    for step, key, need in (
        ("train", "mem_mb", max((r["peak_ram_gb"] for r in planned["trainings"]), default=0)),
        ("train", "runtime", max((r["run_h"] for r in planned["trainings"]), default=0)),
        ("extract", "runtime", max((r["hours"] for r in planned["extractions"]), default=0)),
    ):
        have = res.get(step, {}).get(key, res.get("default", {}).get(key))
        want = need * 1000 if key == "mem_mb" else need * 60  # MB; minutes
        if have is not None and want > have:
            unit = "MB" if key == "mem_mb" else "min"
            notes.append(f"resources.{step}.{key} = {have} {unit}, the plan needs {want:,.0f}")
    if memory_gb is not None and config.get("device") == "cpu":
        over = [r for r in planned["trainings"] if r["peak_ram_gb"] > memory_gb]
        if over:
            names = ", ".join(r["run"] for r in over)
            notes.append(
                f"{len(over)} training(s) need more than this machine's {memory_gb:.1f} GB at "
                f"peak (up to {max(r['peak_ram_gb'] for r in over):.1f} GB): {names}; they "
                "would be killed for memory here: set train.step_chunk (a gradient cache: the "
                "activations of that many inputs per pass), run them on a GPU with the memory, "
                "or leave their tables out"
            )
    return notes
