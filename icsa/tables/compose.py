"""Build the paper's tables from the workflow's metrics files.

A run table (Tables 1, 3–6) is described by a *spec* that the workflow resolves from config
(workflow/rules/common.smk: ``table_spec``)::

    {"table": "table5", "title": ..., "evalset": "pitts30k-test", "baseline": "none",
     "seeds": [0, 1], "rows": [{"backbone": "vgg16", "attention": "icsa", "block": "5",
                                "runs": ["pitts30k-vgg16-icsa-b5-s0", ...]}, ...]}

Each row reads the metrics file (recalls) and the per-query file (``first_hit_rank``, for the
paired intervals) of every seed's run, found in the results folder by :mod:`icsa.layout` like
every other input. Table 2 reads the JSON of ``icsa efficiency``. The paper's numbers
(config/paper_values.yaml) go beside ours.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from icsa import layout
from icsa.arrays import read_npz
from icsa.errors import InputError
from icsa.io import read_json
from icsa.records import record_from_dict, require_once
from icsa.registry import DEFAULT_AGGREGATION, module_label, network_label
from icsa.tables.comparisons import compare_columns, empty_columns, format_seeds, mark_family
from icsa.tables.inference import mean_interval
from icsa.tables.multiplicity import METHODS
from icsa.tables.stats import hits_at, mean_std

PAPER_NS = (1, 5, 10)  # the paper reports Recall@1/5/10


@dataclass(frozen=True)
class Statistics:
    """How a run table's differences are judged (icsa/tables/inference.py, multiplicity.py)."""

    confidence: float = 0.95  # of every interval; α = 1 − confidence for the marks
    multiplicity: str = "holm"  # holm | bh | none, over all ΔR@1 comparisons of one table
    power: float = 0.8  # of the minimum detectable effect

    def __post_init__(self) -> None:
        if self.multiplicity not in METHODS:
            raise InputError(
                f"statistics.multiplicity: {self.multiplicity!r}; expected one of {list(METHODS)}"
            )
        for key in ("confidence", "power"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise InputError(f"statistics.{key}: {value!r}; expected a number in (0, 1)")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Statistics:
        return record_from_dict(cls, data, "statistics")


def block_label(block: str) -> str:
    return "none" if str(block) == "none" else f"block{block}"


def load_paper(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"paper values {path} not found, expected config/paper_values.yaml")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of table names, got {type(data).__name__}")
    return data


def paper_row(paper: dict[str, Any], table: str, **keys: str) -> dict[str, Any] | None:
    """The paper's row of ``table`` whose fields equal ``keys`` (strings compared), or None."""
    for row in (paper.get(table) or {}).get("rows", []):
        if all(str(row.get(k)) == str(v) for k, v in keys.items()):
            return row
    return None


def read_metrics(results: str | os.PathLike, run: str, evalset: str) -> dict[str, Any]:
    """A run's metrics on ``evalset`` in the results folder ``results``."""
    path = Path(layout.metrics_file(run, evalset, results))
    if not path.is_file():
        raise InputError(f"metrics {path} not found, expected `icsa evaluate` output for {run}")
    metrics = read_json(path)
    dataset, split = evalset.rsplit("-", 1)
    if (metrics.get("dataset"), metrics.get("split")) != (dataset, split):
        raise InputError(
            f"metrics {path}: dataset/split {metrics.get('dataset')}/{metrics.get('split')}, "
            f"expected {dataset}/{split}"
        )
    return metrics


def read_ranks(results: str | os.PathLike, run: str, evalset: str) -> np.ndarray:
    path = Path(layout.perquery_file(run, evalset, results))
    if not path.is_file():
        raise InputError(f"per-query file {path} not found, expected `icsa evaluate` output")
    return read_npz(path, ["first_hit_rank"], "per-query file")["first_hit_rank"]


def read_history(results: str | os.PathLike, run: str) -> list[dict[str, Any]]:
    """A run's ``history.json`` (one row per logged epoch), as `icsa train` wrote it."""
    path = Path(layout.history_file(run, "json", results))
    if not path.is_file():
        raise InputError(f"training history {path} not found, expected `icsa train` output")
    return read_json(path)


def read_selection(results: str | os.PathLike, run: str) -> dict[str, Any]:
    """Which epoch a run's checkpoint is and how it was chosen, from its ``history.json``.

    ``best_epoch``: the trained epoch ``icsa train`` selected (never 0, the untrained model);
    ``trained_epochs``; ``stopped_early``; ``untrained_better``: the untrained model (epoch 0,
    when validated) had a higher validation Recall@5 than the selected epoch.
    """
    path = layout.history_file(run, "json", results)
    history = read_history(results, run)
    trained = [row for row in history if int(row.get("epoch", 0)) > 0]
    if not trained or trained[-1].get("best_epoch") is None:
        raise InputError(
            f"{path}: no trained epoch with a best_epoch record; expected the history of a "
            "finished `icsa train` run (retrain runs made before best epochs were recorded)"
        )
    best = int(trained[-1]["best_epoch"])
    best_recall = next(r["recall@5"] for r in trained if int(r["epoch"]) == best)
    untrained = [row for row in history if int(row.get("epoch", 0)) == 0]
    return {
        "best_epoch": best,
        "trained_epochs": len(trained),
        "stopped_early": bool(trained[-1].get("stopped_early", False)),
        "untrained_better": bool(untrained and untrained[0]["recall@5"] > best_recall),
    }


SELECTION_FLAGS = {
    "first-epoch": "best epoch = first trained epoch",
    "stopped-early": "training stopped early",
    "untrained-better": "the untrained model validated better than every trained epoch",
}


def selection_flags(selections: list[dict[str, Any]]) -> list[str]:
    """Flags (keys of SELECTION_FLAGS) that hold for at least one seed of a row."""
    flags = []
    if any(sel["best_epoch"] == 1 for sel in selections):
        flags.append("first-epoch")
    if any(sel["stopped_early"] for sel in selections):
        flags.append("stopped-early")
    if any(sel["untrained_better"] for sel in selections):
        flags.append("untrained-better")
    return flags


def _load_row(spec_row: dict[str, Any], evalset: str, results: str | os.PathLike):
    """Recalls [seeds, ns] (fractions), Found@1 [seeds, queries] and the time rule of a row."""
    recalls, hits, rules = [], [], set()
    for run in spec_row["runs"]:
        metrics = read_metrics(results, run, evalset)
        ranks = read_ranks(results, run, evalset)
        found1 = hits_at(ranks, 1)
        # The per-query file must say what the metrics say, or the interval describes other data.
        if "1" in metrics["recalls"] and abs(found1.mean() - metrics["recalls"]["1"]) > 1e-9:
            raise InputError(
                f"{run}/{evalset}: per-query Recall@1 {found1.mean():.6f} differs from the "
                f"metrics file's {metrics['recalls']['1']:.6f}; expected files of one evaluation"
            )
        recalls.append({int(n): float(v) for n, v in metrics["recalls"].items()})
        hits.append(found1)
        rules.add(str(metrics.get("time_rule") or ""))
    if len(rules) > 1:
        raise InputError(
            f"{evalset}: the runs of one row were evaluated with different time rules "
            f"{sorted(rules)}; expected one evaluation protocol per table"
        )
    return recalls, np.stack(hits), rules.pop()


def build_run_table(
    spec: dict[str, Any],
    results: str | os.PathLike,
    paper: dict[str, Any],
    statistics: Statistics,
    selection: bool = False,
) -> pd.DataFrame:
    """One row per spec row: mean (± std) recalls in %, each seed's R@1, ΔR@1 vs baseline with
    its interval, p and MDE (marks decided over the whole table), and the paper's recalls, from
    the runs' files in the results folder ``results``. With ``selection`` each row also records
    its models' best epochs (seeds joined by "/") and the flags of :data:`SELECTION_FLAGS`, from
    the runs' histories (see :func:`read_selection`)."""
    table, evalset, baseline = spec["table"], spec["evalset"], spec.get("baseline", "none")

    def key(row: dict[str, Any], block: Any = None, attention: str | None = None) -> tuple:
        # Rows are compared within one backbone and aggregator (NetVLAD unless the spec says).
        block = row["block"] if block is None else block
        aggregation = row.get("aggregation", DEFAULT_AGGREGATION)
        return (row["backbone"], aggregation, str(block), attention or row["attention"])

    require_once([key(r) for r in spec["rows"]], f"{table} spec rows")  # before any file is read
    by_key = {key(r): i for i, r in enumerate(spec["rows"])}
    loaded = [_load_row(row, evalset, results) for row in spec["rows"]]
    ns = sorted(set.intersection(*(set(r) for recs, _, _ in loaded for r in recs)))
    out = []
    for row, (recalls, hits, time_rule) in zip(spec["rows"], loaded):
        aggregation = row.get("aggregation", DEFAULT_AGGREGATION)
        rec = {
            "table": table,
            "network": network_label(row["backbone"], row["attention"], aggregation),
            "backbone": row["backbone"],
            "attention": row["attention"],
            "aggregation": aggregation,
            "block": block_label(row["block"]),
            "evalset": evalset,
            "evalset_label": spec.get("evalset_label") or evalset,
            "seeds": len(row["runs"]),
            "seed_ids": "/".join(str(x) for x in spec.get("seeds") or range(len(row["runs"]))),
            "time_rule": time_rule,
        }
        if selection:
            selections = [read_selection(results, run) for run in row["runs"]]
            rec["best_epoch"] = "/".join(str(sel["best_epoch"]) for sel in selections)
            rec["trained_epochs"] = "/".join(str(sel["trained_epochs"]) for sel in selections)
            rec["selection_flags"] = ";".join(selection_flags(selections))
        for n in ns:
            stat = mean_std([100.0 * r[n] for r in recalls])
            rec[f"R@{n}"], rec[f"R@{n}_std"] = stat.mean, stat.std
        # Each seed's Recall@1 and the interval of the row's mean (what the table's figure draws).
        rec["R@1_seeds"] = format_seeds([100.0 * float(h.mean()) for h in hits])
        low, high = mean_interval(hits, statistics.confidence)
        rec["R@1_low"], rec["R@1_high"] = 100.0 * low, 100.0 * high
        # ΔR@1 vs the baseline attention and vs the block baseline (icsa/tables/comparisons.py).
        base_index = by_key.get(key(row, attention=baseline))
        rec.update({"baseline": "", **empty_columns("dR@1")})
        if row["attention"] != baseline and base_index is not None:
            base_row = spec["rows"][base_index]
            rec["baseline"] = network_label(
                base_row["backbone"], base_row["attention"], aggregation
            )
            rec.update(compare_columns("dR@1", hits, loaded[base_index][1], statistics.confidence))
        block_base = spec.get("block_baseline")
        block_index = None if block_base is None else by_key.get(key(row, block=block_base))
        rec.update({"block_baseline": "", **empty_columns("dR@1_block")})
        if block_index is not None and str(row["block"]) != str(block_base):
            rec["block_baseline"] = block_label(block_base)
            rec.update(
                compare_columns("dR@1_block", hits, loaded[block_index][1], statistics.confidence)
            )
        # The paper measured NetVLAD only.
        theirs = (aggregation == DEFAULT_AGGREGATION and paper_row(
            paper, table, backbone=row["backbone"], attention=row["attention"], block=row["block"]
        )) or {}  # fmt: skip
        for n in PAPER_NS:
            rec[f"paper_R@{n}"] = float(theirs[f"R@{n}"]) if f"R@{n}" in theirs else math.nan
        # Where the paper's numbers come from (real data), never to be read as our evaluation set.
        rec["paper_evalset"] = str((paper.get(table) or {}).get("evaluated_on", ""))
        out.append(rec)
    # One family per table: every comparison made above is judged together.
    mark_family(out, statistics.confidence, statistics.multiplicity, statistics.power)
    return pd.DataFrame(out)


def build_efficiency_table(
    spec: dict[str, Any], efficiency_path: str | os.PathLike, paper: dict[str, Any]
) -> pd.DataFrame:
    """Table 2: size (kB = 1024 bytes) and median forward time per module, with ratios to ICSA
    (absolute times depend on the machine; the paper's unit is not stated)."""
    require_once(spec["attentions"], f"{spec['table']} spec attentions")
    path = Path(efficiency_path)
    if not path.is_file():
        raise InputError(f"efficiency file {path} not found, expected `icsa efficiency` output")
    measured = {r["module"]: r for r in read_json(path).get("rows", [])}
    missing = [m for m in spec["attentions"] if m not in measured]
    if missing:
        raise InputError(f"{path}: no measurement for modules {missing}; got {sorted(measured)}")
    icsa_time = measured.get("icsa", {}).get("time_ms_median", math.nan)
    paper_icsa = float((paper_row(paper, spec["table"], module="icsa") or {}).get("time", math.nan))
    out = []
    for module in spec["attentions"]:
        row = measured[module]
        theirs = paper_row(paper, spec["table"], module=module) or {}
        out.append(
            {
                "table": spec["table"],
                "module": module_label(module),
                "params": int(row["params"]),
                "size_kb": float(row["size_kb"]),
                "paper_size_kb": float(theirs.get("size_kb", math.nan)),
                "time_ms": float(row["time_ms_median"]),
                "time_ms_iqr": float(row.get("time_ms_iqr", math.nan)),
                "time_vs_icsa": float(row["time_ms_median"]) / icsa_time,
                "paper_time": float(theirs.get("time", math.nan)),
                "paper_time_vs_icsa": float(theirs.get("time", math.nan)) / paper_icsa,
                "batch_size": int(row.get("batch_size", 1)),
                "device": str(row.get("device", "")),
            }
        )
    return pd.DataFrame(out)
