"""The results layout: every path the workflow writes or reads under ``results/``.

Defined here and nowhere else (docs/architecture.md, "Run naming and results layout"). Each path
is a function of its names, so one function gives both a concrete file and, called with
wildcards (``run_dir(icsa.spec.RUN_ID)``, ``index_file("{dataset}")``), the Snakemake pattern of
every such file: workflow/rules/common.smk builds its patterns this way, and ``icsa tables
build`` and ``icsa prepare check`` find their files with the same functions. ``results`` is the
results folder (default ``results``, relative to the working directory, like the config).
:mod:`icsa.spec` re-exports the run-level functions. No torch, no icsa imports but errors.
"""

from __future__ import annotations

import os

from icsa.errors import InputError

RESULTS = "results"
Root = str | os.PathLike  # a results folder (f-strings give the same path for either)

# Folders of the jobs' logs and Snakemake's benchmark files ({LOGS}/{step}/…).
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"


# ---- data ------------------------------------------------------------------------------------
def index_file(dataset: str, results: Root = RESULTS) -> str:
    """What ``icsa prepare check`` found in a dataset folder; every later step reads it."""
    return f"{results}/datasets/{dataset}.json"


def centroids_file(
    dataset: str, backbone: str, source: str, seed: int | str, results: Root = RESULTS
) -> str:
    """K-means centroids; ``source``: "backbone", or the module k-means samples through
    (:func:`icsa.centroids.centroid_source`)."""
    return f"{results}/centroids/{dataset}-{backbone}-{source}-s{seed}.npz"


# ---- one training run (``run``: an icsa.spec.run_id) -----------------------------------------
def run_dir(run: str, results: Root = RESULTS) -> str:
    return f"{results}/runs/{run}"


def checkpoint_best(run: str, results: Root = RESULTS) -> str:
    return f"{run_dir(run, results)}/checkpoint_best.pt"


def history_file(run: str, ext: str, results: Root = RESULTS) -> str:
    """``history.csv`` or ``history.json`` (``ext`` csv or json)."""
    return f"{run_dir(run, results)}/history.{ext}"


def dvclive_dir(run: str, results: Root = RESULTS) -> str:
    """The run's dvclive folder (written by ``icsa train`` unless --no-dvclive)."""
    return f"{run_dir(run, results)}/dvclive"


def run_state_dir(run: str, results: Root = RESULTS) -> str:
    """The training job's own scratch folder: ``checkpoint_last.pt``, ``run.json`` (the
    fingerprint it was made with) and ``prefix_cache/``. Not a Snakemake output, because
    Snakemake deletes the outputs of a failed job, and this is what an interrupted run resumes."""
    return f"{run_dir(run, results)}/state"


# ---- evaluation of a run on an evaluation set (``evalset``: e.g. pitts30k-test) --------------
def descriptors_file(run: str, evalset: str, side: str, results: Root = RESULTS) -> str:
    """``side`` db or q."""
    return f"{results}/descriptors/{run}/{evalset}-{side}.npy"


def descriptors_record(run: str, evalset: str, results: Root = RESULTS) -> str:
    """What ``icsa extract`` made the two descriptor files from (model config, checkpoint
    digest, evaluation set, rows); ``icsa evaluate`` checks it against the run's ModelSpec."""
    return f"{results}/descriptors/{run}/{evalset}.json"


def metrics_file(run: str, evalset: str, results: Root = RESULTS) -> str:
    return f"{results}/metrics/{run}/{evalset}.json"


def perquery_file(run: str, evalset: str, results: Root = RESULTS) -> str:
    return f"{results}/metrics/{run}/{evalset}-perquery.npz"


# ---- tables and figures ----------------------------------------------------------------------
def efficiency_file(results: Root = RESULTS) -> str:
    """What ``icsa efficiency`` measured (Table 2's input)."""
    return f"{results}/efficiency.json"


# What `icsa tables build` writes per table, by output name (the table rule's output keys):
# the CSV, Markdown and JSON (`dvc metrics show`), the report's HTML page and the table's figure,
# and the data of its DVC plots (Recall@N per row, training curves of the runs behind the rows).
TABLE_OUTPUTS = {
    "csv": ".csv",
    "md": ".md",
    "json": ".json",
    "html": ".html",
    "png": ".png",
    "recall": "_recall.csv",
    "curves": "_curves.csv",
}


def table_file(table: str, output: str, results: Root = RESULTS) -> str:
    """``results/table5.csv`` for ("table5", "csv"); ``output`` a key of TABLE_OUTPUTS."""
    if output not in TABLE_OUTPUTS:
        raise InputError(f"table output {output!r}: expected one of {sorted(TABLE_OUTPUTS)}")
    return f"{results}/{table}{TABLE_OUTPUTS[output]}"


def table_results(path: str | os.PathLike, table: str) -> str:
    """The results folder of ``path``, a ``table_file(table, "csv", results)`` (its inverse):
    the table rule derives what it passes to ``icsa tables build`` from its own output."""
    tail = table_file(table, "csv", "")
    if not str(path).endswith(tail):
        raise InputError(f"table file {path}: expected a path ending in {tail}")
    return str(path)[: -len(tail)] or "."


def figure_file(name: str, results: Root = RESULTS) -> str:
    """A figure or its data, e.g. ``fig5_singular_values.png`` (workflow/rules/figures.smk)."""
    return f"{results}/figures/{name}"


def local_stats_file(run: str, results: Root = RESULTS) -> str:
    """One pass of a run's model over the figures' evaluation set (Figs. 5-8 read it)."""
    return figure_file(f"data/local_stats/{run}.npz", results)
