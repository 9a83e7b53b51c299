"""Per-run metrics files and a Table 5 spec for the table builders' tests."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from icsa import layout
from icsa.tables import hits_at
from tests.helpers.workflow import ROOT

PAPER = ROOT / "config" / "paper_values.yaml"


def write_run(results: Path, run: str, evalset: str, ranks: np.ndarray) -> None:
    """Files as `icsa evaluate` writes them (docs/architecture.md, "Evaluation"), in the
    results folder ``results``."""
    dataset, split = evalset.rsplit("-", 1)
    recalls = {str(n): float(hits_at(ranks, n).mean()) for n in (1, 5, 10, 20)}
    metrics_file = Path(layout.metrics_file(run, evalset, results))
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    metrics = {"model": run, "dataset": dataset, "split": split, "num_q": len(ranks),
               "recalls": recalls}  # fmt: skip
    metrics_file.write_text(json.dumps(metrics))
    np.savez(layout.perquery_file(run, evalset, results), first_hit_rank=ranks)


def table5_spec(seeds: list[int]) -> dict:
    rows = [
        {"backbone": "vgg16", "attention": att, "block": block,
         "runs": [f"pitts30k-vgg16-{att}-b{block}-s{s}" for s in seeds]}
        for block, att in itertools.product(["none", "5"], ["none", "icsa"])
    ]  # fmt: skip
    return {"table": "table5", "title": "Partial", "evalset": "pitts30k-test",
            "baseline": "none", "seeds": seeds, "rows": rows}  # fmt: skip
