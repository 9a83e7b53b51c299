"""Glue between the config and the rules: the pipeline's facts live in the package.

Run ids, the results layout and the run fingerprint are icsa.spec; the config checks, table rows
and each training job's RunSpec are icsa.pipeline; names and labels come from icsa.registry.
Both the JSON schema (validated in the Snakefile) and icsa.pipeline.check run at parse time,
before any job starts.
"""

import dataclasses
import json
import math
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from icsa import pipeline, registry, spec
from icsa.centroids import centroid_source
from icsa.data.fingerprint import folder_fingerprint
from icsa.errors import InputError
from icsa.utils import available_cpus

# ---- path patterns (docs/architecture.md, "Run naming and results layout") -------------------
# icsa.layout's path functions called with wildcards: the Snakemake pattern of every such file.
from icsa import layout

RUN = spec.RUN_ID
INDEX = layout.index_file("{dataset}")
# {source}: "backbone", or the module k-means samples through (icsa.centroids.centroid_source)
CENTROIDS = layout.centroids_file("{dataset}", "{backbone}", "{source}", "{seed}")
RUN_DIR = layout.run_dir(RUN)
CHECKPOINT = layout.checkpoint_best(RUN)
HISTORY_CSV = layout.history_file(RUN, "csv")
HISTORY_JSON = layout.history_file(RUN, "json")
DVCLIVE = layout.dvclive_dir(RUN)
DESCRIPTORS_DB = layout.descriptors_file(RUN, "{evalset}", "db")
DESCRIPTORS_Q = layout.descriptors_file(RUN, "{evalset}", "q")
DESCRIPTORS_RECORD = layout.descriptors_record(RUN, "{evalset}")
METRICS = layout.metrics_file(RUN, "{evalset}")
PERQUERY = layout.perquery_file(RUN, "{evalset}")
EFFICIENCY = layout.efficiency_file()
# Each output of the table rule, by name (icsa.layout.TABLE_OUTPUTS).
TABLE = {output: layout.table_file("{table}", output) for output in layout.TABLE_OUTPUTS}
PAPER_VALUES = "config/paper_values.yaml"
LOGS = layout.LOGS
BENCHMARKS = layout.BENCHMARKS
ENV = "../envs/icsa.yaml"  # relative to rules/ (used with --sdm conda)


def parse_time(check, *args):
    """Run an icsa.pipeline function; its InputError becomes Snakemake's parse-time error."""
    try:
        return check(*args)
    except InputError as err:
        raise WorkflowError(str(err)) from err


# ---- names -----------------------------------------------------------------------------------
split_evalset = pipeline.split_evalset


def resolve_evalset(name, key):
    return parse_time(pipeline.resolve_evalset, config, name, key)


def normalise_block(backbone, block, key):
    return parse_time(pipeline.normalise_block, backbone, block, key)


def evalset_label(evalset):
    return pipeline.evalset_label(config, evalset)


def dataset_root(dataset):
    return config["datasets"][dataset]["root"]


def dataset_layout(dataset):
    return pipeline.dataset_layout(config, dataset)


def policy_option(dataset):
    """` --policy NAME` where config names the dataset's evaluation policy, else nothing."""
    policy = pipeline.dataset_policy(config, dataset)
    return f" --policy {policy}" if policy else ""


def dataset_source(wildcards):
    """Input of check_dataset: the synthetic city when generated here, else the user's folder
    (nothing when it is missing: the check itself then fails with the parse-time warning)."""
    if config.get("synthetic") and wildcards.dataset in pipeline.SYNTHETIC_ROLES:
        return config["synthetic"]["out"]
    root = dataset_root(wildcards.dataset)  # the user's, also beside a synthetic city
    return root if Path(root).is_dir() else []


def evalset_index(wildcards):
    return INDEX.format(dataset=split_evalset(wildcards.evalset)[0])


def run_centroids(wildcards):
    """The centroids a run's aggregator starts from when its registry entry needs them
    (NetVLAD; shared by modules that are identity at init); none otherwise (GeM)."""
    aggregation = spec.parse_run_id(RUN.format(**wildcards))["aggregation"]
    if not registry.needs_centroids(aggregation):
        return []
    return CENTROIDS.format(
        dataset=wildcards.dataset,
        backbone=wildcards.backbone,
        source=centroid_source(wildcards.attention),
        seed=wildcards.seed,
    )


def centroids_flag(wildcards, input):
    return f"--centroids {input.centroids} " if input.centroids else ""


VALIDATION = parse_time(pipeline.validation_split, config)


def validation_index(wildcards):
    """The validation dataset's index when runs validate on another dataset (`validation`)."""
    return INDEX.format(dataset=split_evalset(VALIDATION)[0]) if VALIDATION else []


def validation_flags(wildcards):
    """`icsa train`'s --val flags when `validation` names another dataset's split."""
    if not VALIDATION:
        return ""
    dataset = split_evalset(VALIDATION)[0]
    return (
        f"--val {VALIDATION} --val-root {shlex.quote(dataset_root(dataset))}"
        f" --val-layout {dataset_layout(dataset)} "
    )


def run_id(dataset, backbone, attention, block, seed, aggregation=registry.DEFAULT_AGGREGATION):
    return spec.run_id(dataset, backbone, attention, block, seed, aggregation)


def run_spec_json(wildcards):
    """The training job's RunSpec (icsa train --spec): a params value, so that any change of
    what the run is reruns it, and `icsa train` then decides whether its state can resume."""
    return parse_time(pipeline.run_spec, config, RUN.format(**wildcards)).to_json()


def model_spec_json(wildcards):
    """The model a run's checkpoint must hold (icsa extract --model-spec)."""
    run = parse_time(pipeline.run_spec, config, RUN.format(**wildcards))
    return json.dumps(run.model.to_dict(), sort_keys=True)


def kmeans_model_spec_json(wildcards):
    """The untrained model k-means samples: the backbone, or the module of {source}."""
    attention = "none" if wildcards.source == "backbone" else wildcards.source
    model = parse_time(
        pipeline.model_spec, config, wildcards.backbone, attention, "none", int(wildcards.seed)
    )
    return json.dumps(model.to_dict(), sort_keys=True)


# ---- what each table needs -------------------------------------------------------------------
def table_spec(name):
    return parse_time(pipeline.table_spec, config, name)


def table_runs(name):
    return [run for row in table_spec(name)["rows"] for run in row["runs"]]


def table_metrics(name):
    """Metrics and per-query files every row of a run table reads."""
    evalset = table_spec(name)["evalset"]
    files = []
    for run in table_runs(name):
        files += [spec.metrics_file(run, evalset), spec.perquery_file(run, evalset)]
    return files


def table_histories(name):
    """Training histories of a run table's models: each row records its best epoch."""
    return sorted({spec.history_file(run, "json") for run in table_runs(name)})


def paper_values(wildcards):
    """The paper's numbers, read from the working directory's config/ like the config."""
    if not Path(PAPER_VALUES).is_file():
        raise WorkflowError(f"{Path.cwd()}: no {PAPER_VALUES} here; {RUN_FROM_ROOT}")
    return PAPER_VALUES


def table_inputs(wildcards):
    if wildcards.table not in config["tables"]:
        raise WorkflowError(
            str(
                pipeline.config_error(
                    "tables", wildcards.table, f"one of {sorted(config['tables'])}"
                )
            )
        )
    if pipeline.table_kind(config, wildcards.table) == pipeline.EFFICIENCY_TABLE:
        return [EFFICIENCY]
    return table_metrics(wildcards.table) + table_histories(wildcards.table)


def table_params(wildcards):
    if pipeline.table_kind(config, wildcards.table) == pipeline.EFFICIENCY_TABLE:
        # Its config entry (kind and modules) and its name.
        entry = config["tables"][wildcards.table]
        return json.dumps({"table": wildcards.table, **entry}, sort_keys=True)
    return json.dumps(table_spec(wildcards.table), sort_keys=True)


def table_targets():
    return [
        layout.table_file(name, output)
        for name in sorted(config["tables"])
        for output in ("csv", "md", "html")
    ]


# `snakemake --report results/report.html` without a target reports the default target, and
# Snakemake refuses a report in which a file marked for it does not exist yet. So that the report
# builds after any target (after the main command only Table 5 and none of the figures exist),
# the default target of a report is what exists of `all`; after `all` that is everything.
# Snakemake has no public API that tells a Snakefile it is parsed for --report (nor a setting
# for a report of what exists), so this reads the command line: the one place the workflow
# depends on how Snakemake was invoked. Through Snakemake's Python API, name a target instead.
REPORTING = any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv)


def default_targets(*targets):
    """`targets` (nested lists of paths); under --report only the paths that exist."""
    flat = []
    for target in targets:
        flat += [target] if isinstance(target, str) else default_targets(*target)
    return [f for f in flat if Path(f).exists()] if REPORTING else flat


def all_checkpoints():
    """Checkpoints of every run some table needs (the DVC `models` stage)."""
    runs = {run for name in pipeline.run_tables(config) for run in table_runs(name)}
    return sorted(spec.checkpoint_best(run) for run in runs)


def all_metrics():
    """Metrics and per-query files of every run table (the DVC `evaluate` stage)."""
    return sorted({f for name in pipeline.run_tables(config) for f in table_metrics(name)})


def all_indexes():
    return sorted(INDEX.format(dataset=name) for name in config["datasets"])


# ---- job sizing ------------------------------------------------------------------------------
def resource_value(step, key):
    merged = {**config["resources"].get("default", {}), **config["resources"].get(step, {})}
    return merged.get(key)


def declared_cores():
    """--cores (Snakemake's `workflow.cores`), or None where none was given (a cluster run
    without the default workflow profile, whose `cores: all` otherwise sets it)."""
    try:
        return workflow.cores
    except WorkflowError:  # workflow.cores raises when --cores is unset
        return None


def job_cpus(step):
    """CPUs (torch threads) a job runs with: the configured count, capped by --cores where that
    is below this machine's CPUs. Never capped by this machine itself: on a cluster the job's
    node decides, and every `icsa` command caps its threads by the CPUs it may use
    (icsa.utils.set_threads)."""
    cpus = max(1, resource_value(step, "cpus") or 1)
    cores = declared_cores()
    if cores and cores < available_cpus():
        cpus = min(cpus, cores)
    return cpus


def job_threads(step):
    """The job's claim on --cores (`threads:`): its share of --cores in proportion to its share
    of this machine's CPUs.

    Snakemake keeps the sum of the running jobs' threads within --cores. `--cores 8` on a 2-CPU
    machine would then start 8 one-CPU jobs at once; claiming cores × cpus / CPUs instead (a
    one-CPU job claims 4 of the 8, a 2-CPU training all 8) keeps the jobs' real CPUs within
    the machine's. With --cores at or below the machine's CPUs (`cores: all` in the workflow
    profile, and on a cluster) the claim is the job's CPUs. The job itself runs with
    job_cpus() threads (resources.cpus_per_task, which SLURM also reads).
    """
    cpus = job_cpus(step)
    cores = declared_cores()
    physical = available_cpus()
    if cores and cores > physical:
        return min(cores, math.ceil(min(cpus, physical) * cores / physical))
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


# Every job imports the config's plugins too: `icsa` reads $ICSA_PLUGINS, which each job's own
# shell exports (Snakemake's shell.prefix; this process's environment stays as it is). Always
# set, also to nothing, so that a value left in the caller's environment never reaches a job.
# A prefix replaces Snakemake's default bash strict mode, hence restated here.
PLUGINS = shlex.quote(",".join(config.get("plugins", [])))
shell.prefix(f"set -euo pipefail; export {registry.PLUGINS_ENV}={PLUGINS}; ")
for warning in parse_time(pipeline.check, config):
    logger.warning(f"warning: {warning} (the jobs that read this dataset will fail with this)")


# ---- step settings (icsa.step_settings) ------------------------------------------------------
def step_setting(section, key):
    """A value of the kmeans, extract, evaluate or efficiency section: the config's, else its
    record's default, which is also the CLI's (so a hand-run step does what the rule does)."""
    return getattr(pipeline.step_settings(config, section), key)
