"""Shared definitions: config checks, path patterns, the runs each table needs, and job sizing.

The JSON schema (validated in the Snakefile) checks types, ranges and the allowed names; the
checks here are the ones a schema cannot express (data roots on disk, names that must refer to
each other, block numbers per backbone). Both run at parse time, before any job starts.
"""

import json
import math
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from icsa.centroids import centroid_source
from icsa.data.fingerprint import folder_fingerprint
from icsa.errors import InputError
from icsa.input_sizes import image_size_problem
from icsa.train.settings import TrainSettings  # torch-free: checks the recipe at parse time


# ---- path patterns (docs/architecture.md, "Run naming and results layout") -------------------
RUN = "{dataset}-{backbone}-{attention}-b{block}-s{seed}"
INDEX = "results/datasets/{dataset}.json"
# {source}: "backbone", or the module k-means samples through (icsa.centroids.centroid_source)
CENTROIDS = "results/centroids/{dataset}-{backbone}-{source}-s{seed}.npz"
RUN_DIR = f"results/runs/{RUN}"
CHECKPOINT = f"results/runs/{RUN}/checkpoint_best.pt"
DESCRIPTORS_DB = f"results/descriptors/{RUN}/{{evalset}}-db.npy"
DESCRIPTORS_Q = f"results/descriptors/{RUN}/{{evalset}}-q.npy"
METRICS = f"results/metrics/{RUN}/{{evalset}}.json"
PERQUERY = f"results/metrics/{RUN}/{{evalset}}-perquery.npz"
EFFICIENCY = "results/efficiency.json"
LOGS = "results/logs"
BENCHMARKS = "results/benchmarks"
ENV = "../envs/icsa.yaml"  # relative to rules/ (used with --sdm conda)


def config_error(key, value, expected):
    """A parse-time error naming the config key, the value found and what was expected."""
    return WorkflowError(f"config error: {key} = {value!r}; expected {expected}")


# ---- names -----------------------------------------------------------------------------------
def normalise_block(backbone, block, key):
    """'last' → the backbone's last block; ints → strings; numbers checked against the backbone."""
    num_blocks = config["num_blocks"].get(backbone)
    if num_blocks is None:
        raise config_error("num_blocks", sorted(config["num_blocks"]), f"an entry for {backbone}")
    block = str(block)
    if block == "last":
        return str(num_blocks)
    if block != "none" and not 1 <= int(block) <= num_blocks:
        raise config_error(key, block, f"none, last or 1..{num_blocks} for {backbone}")
    return block


def split_evalset(evalset):
    """'pitts30k-test' → ('pitts30k', 'test')."""
    dataset, split = evalset.rsplit("-", 1)
    return dataset, split


def resolve_evalset(name, key):
    """A key of `evalsets` (e.g. main) or a literal '{dataset}-{split}'."""
    evalset = config["evalsets"].get(name, name)
    if "-" not in evalset:
        raise config_error(key, name, f"one of {sorted(config['evalsets'])} or DATASET-SPLIT")
    dataset = split_evalset(evalset)[0]
    if dataset not in config["datasets"]:
        raise config_error(key, evalset, f"a dataset listed under datasets: {sorted(config['datasets'])}")
    return evalset


def dataset_root(dataset):
    return config["datasets"][dataset]["root"]


def dataset_source(wildcards):
    """Input of check_dataset: the synthetic city when generated here, else the user's folder."""
    if config.get("synthetic"):
        return config["synthetic"]["out"]
    return dataset_root(wildcards.dataset)


# What each dataset stands in for, in the synthetic city's labels (the generator writes these).
SYNTHETIC_ROLES = {"pitts30k": "Pitts30k", "tokyotm": "TokyoTM"}


def evalset_label(evalset):
    """How tables, figures and the report name an evaluation set: the synthetic city is never
    called by the real dataset's name ("synthetic Pitts30k-role city, test")."""
    dataset, split = split_evalset(evalset)
    if config.get("synthetic") and dataset in SYNTHETIC_ROLES:
        return f"synthetic {SYNTHETIC_ROLES[dataset]}-role city, {split}"
    return evalset


def evalset_index(wildcards):
    return INDEX.format(dataset=split_evalset(wildcards.evalset)[0])


def run_centroids(wildcards):
    """The centroids a run's NetVLAD starts from (shared by modules that are identity at init)."""
    return CENTROIDS.format(
        dataset=wildcards.dataset,
        backbone=wildcards.backbone,
        source=centroid_source(wildcards.attention),
        seed=wildcards.seed,
    )


def run_id(dataset, backbone, attention, block, seed):
    return RUN.format(dataset=dataset, backbone=backbone, attention=attention, block=block, seed=seed)


# ---- checks a schema cannot express ----------------------------------------------------------
def check_config():
    if config["dataset"] not in config["datasets"]:
        raise config_error("dataset", config["dataset"], f"one of datasets: {sorted(config['datasets'])}")
    synthetic = config.get("synthetic")
    for name, entry in config["datasets"].items():
        root = Path(entry["root"])
        key = f"datasets.{name}.root"
        if synthetic:
            # The generator writes <out>/pitts30k and <out>/tokyotm; other roots cannot come from it.
            expected = Path(synthetic["out"]) / name
            if root != expected:
                raise config_error(key, str(root), f"{expected} (written by synthetic.out)")
        elif not root.is_dir():
            raise config_error(
                key, str(root),
                "an existing folder in the NetVLAD layout (or set `synthetic:` to generate one)",
            )
    for name in config["evalsets"]:
        resolve_evalset(name, f"evalsets.{name}")
    for name, spec in config["tables"].items():
        if name == "table2":
            continue
        resolve_evalset(spec["evalset"], f"tables.{name}.evalset")
        if spec["baseline"] not in spec["attentions"]:
            raise config_error(
                f"tables.{name}.baseline", spec["baseline"], f"one of its attentions {spec['attentions']}"
            )
        for backbone in spec["backbones"]:
            for block in spec["blocks"]:
                normalise_block(backbone, block, f"tables.{name}.blocks")
    for backbone in sorted({b for n, t in config["tables"].items() if n != "table2" for b in t["backbones"]}):
        problem = image_size_problem(backbone, config["model"]["image_size"])
        if problem:
            raise config_error("model.image_size", config["model"]["image_size"], problem)
    # The recipe as `icsa train` will read it, so that a typo (`epoch: 3`) or an impossible
    # value (`neg_kept: 0`) fails now, not in the first training job after data and k-means.
    try:
        TrainSettings.from_dict(config["train"], "train")
    except InputError as err:
        raise WorkflowError(f"config error: {err}") from err


# ---- what each table needs -------------------------------------------------------------------
def table_spec(name):
    """The resolved rows of a run table (JSON-able): label parts, run ids per seed, baselines."""
    spec = config["tables"][name]
    evalset = resolve_evalset(spec["evalset"], f"tables.{name}.evalset")
    rows = []
    for backbone in spec["backbones"]:
        for block in spec["blocks"]:
            block = normalise_block(backbone, block, f"tables.{name}.blocks")
            for attention in spec["attentions"]:
                rows.append(
                    {
                        "backbone": backbone,
                        "attention": attention,
                        "block": block,
                        "runs": [
                            run_id(config["dataset"], backbone, attention, block, seed)
                            for seed in config["seeds"]
                        ],
                    }
                )
    blocks = {row["block"] for row in rows}
    return {
        "table": name,
        "title": spec.get("title", name),
        "evalset": evalset,
        "evalset_label": evalset_label(evalset),
        "baseline": spec["baseline"],
        # Rows trained from a block are also compared with only attention + NetVLAD trained.
        "block_baseline": "none" if "none" in blocks and len(blocks) > 1 else None,
        "seeds": config["seeds"],
        "rows": rows,
    }


def table_metrics(name):
    """Metrics and per-query files every row of a run table reads."""
    spec = table_spec(name)
    files = []
    for row in spec["rows"]:
        for run in row["runs"]:
            files.append(f"results/metrics/{run}/{spec['evalset']}.json")
            files.append(f"results/metrics/{run}/{spec['evalset']}-perquery.npz")
    return files


def table_histories(name):
    """Training histories of a run table's models: each row records its best epoch."""
    spec = table_spec(name)
    return sorted({f"results/runs/{run}/history.json" for row in spec["rows"] for run in row["runs"]})


def table_inputs(wildcards):
    if wildcards.table not in config["tables"]:
        raise config_error("tables", wildcards.table, f"one of {sorted(config['tables'])}")
    if wildcards.table == "table2":
        return [EFFICIENCY]
    return table_metrics(wildcards.table) + table_histories(wildcards.table)


def table_params(wildcards):
    if wildcards.table == "table2":
        return json.dumps({"table": "table2", **config["tables"]["table2"]}, sort_keys=True)
    return json.dumps(table_spec(wildcards.table), sort_keys=True)


def table_targets():
    return [
        f"results/{name}.{ext}" for name in sorted(config["tables"]) for ext in ("csv", "md", "html")
    ]


# `snakemake --report results/report.html` without a target reports the default target, and
# Snakemake refuses a report in which a file marked for it does not exist yet. So that the report
# builds after any target (after the main command only Table 5 and none of the figures exist),
# the default target of a report is what exists of `all`; after `all` that is everything.
REPORTING = any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv)


def default_targets(*targets):
    """`targets` (nested lists of paths); under --report only the paths that exist."""
    flat = []
    for target in targets:
        flat += [target] if isinstance(target, str) else default_targets(*target)
    return [f for f in flat if Path(f).exists()] if REPORTING else flat


def all_checkpoints():
    """Checkpoints of every run some table needs (the DVC `models` stage)."""
    runs = {
        run
        for name in config["tables"]
        if name != "table2"
        for row in table_spec(name)["rows"]
        for run in row["runs"]
    }
    return sorted(f"results/runs/{run}/checkpoint_best.pt" for run in runs)


def all_metrics():
    """Metrics and per-query files of every run table (the DVC `evaluate` stage)."""
    names = [name for name in config["tables"] if name != "table2"]
    return sorted({f for name in names for f in table_metrics(name)})


def all_indexes():
    return sorted(INDEX.format(dataset=name) for name in config["datasets"])


# ---- job sizing ------------------------------------------------------------------------------
def resource_value(step, key):
    merged = {**config["resources"].get("default", {}), **config["resources"].get(step, {})}
    return merged.get(key)


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def job_cpus(step):
    """CPUs (torch threads) a job uses: the configured count, capped by this machine and --cores
    when jobs run locally; on a cluster the node's size is the scheduler's business."""
    cpus = resource_value(step, "cpus") or 1
    if workflow.local_exec:
        cores = workflow.global_resources["_cores"].value
        cpus = min(cpus, available_cpus(), cores or cpus)
    return max(1, cpus)


def job_threads(step):
    """Threads declared to Snakemake's scheduler.

    `--cores 8` on a 2-CPU machine would let the scheduler start 8 one-thread jobs (or four
    two-thread trainings) at once. To keep the physical CPUs from being oversubscribed, a local
    job claims its share of --cores in proportion to the physical CPUs it uses: with 8 cores
    declared and 2 CPUs, a 2-thread training claims all 8 slots and a 1-thread job claims 4.
    The job itself runs with job_cpus() threads (passed as --threads).
    """
    cpus = job_cpus(step)
    if not workflow.local_exec:
        return cpus
    cores = workflow.global_resources["_cores"].value
    physical = available_cpus()
    if cores and cores > physical:
        return min(cores, math.ceil(cpus * cores / physical))
    return cpus


def uses_gpu(step):
    return config["device"] == "cuda" and (resource_value(step, "gpus") or 0) > 0


def job_resources(step):
    """Resources of one rule from config `resources` (names the SLURM executor plugin reads)."""
    res = {
        "mem_mb": resource_value(step, "mem_mb") or 2000,
        "runtime": resource_value(step, "runtime") or 30,
        "cpus_per_task": job_cpus(step),
    }
    if uses_gpu(step):
        res["gpu"] = resource_value(step, "gpus")
        if resource_value(step, "gpu_model"):
            res["gpu_model"] = resource_value(step, "gpu_model")
    return res


def gpu_prefix(step):
    """`icsa gpu run` pins a GPU job to one free device (CUDA_VISIBLE_DEVICES, file locks)."""
    if uses_gpu(step):
        return f"icsa gpu run --lock-dir {config['gpu_lock_dir']} -- "
    return ""


def job_device(step):
    return "cuda" if uses_gpu(step) else "cpu"


check_config()
