"""The data of a run table's DVC plots (dvc.yaml `plots:`): one long-format CSV each.

``{table}_recall.csv``: Recall@N against N for every row of the table (mean over seeds), the curve
a reader compares between commits with ``dvc plots diff``. ``{table}_curves.csv``: the training
curve (loss and validation Recall@N per epoch) of every run behind the table's rows, read from
the runs' ``history.json``. Both are long format (one line per point, the row or run as a
column) so that one Vega-Lite template (.dvc/plots/by_row.json) colours one line per row.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from icsa.io import atomic_path
from icsa.tables.compose import read_history
from icsa.tables.render import recall_columns, row_label

RECALL_COLUMNS = ["row", "N", "recall"]
CURVE_COLUMNS = ["row", "run", "seed", "epoch", "loss", "val_recall@1", "val_recall@5"]


def recall_curves(df: pd.DataFrame) -> pd.DataFrame:
    """[row, N, recall]: each row's Recall@N (%, mean over seeds) for every N of the table."""
    points = [
        {"row": row_label(rec), "N": n, "recall": rec[f"R@{n}"]}
        for rec in df.to_dict("records")
        for n in recall_columns(df)
    ]
    return pd.DataFrame(points, columns=RECALL_COLUMNS)


def training_curves(
    df: pd.DataFrame, spec: dict[str, Any], results: str | os.PathLike
) -> pd.DataFrame:
    """[row, run, seed, epoch, loss, val_recall@1, val_recall@5] of every run behind the rows
    (their histories in the results folder ``results``).

    Epoch 0 (the untrained model, when validated) has no loss; recalls are in %."""
    points = []
    for rec, row in zip(df.to_dict("records"), spec["rows"]):
        for seed, run in zip(spec["seeds"], row["runs"]):
            for entry in read_history(results, run):
                points.append(
                    {
                        "row": row_label(rec),
                        "run": run,
                        "seed": seed,
                        "epoch": int(entry["epoch"]),
                        "loss": entry.get("loss"),
                        "val_recall@1": 100 * entry["recall@1"] if "recall@1" in entry else None,
                        "val_recall@5": 100 * entry["recall@5"] if "recall@5" in entry else None,
                    }
                )
    return pd.DataFrame(points, columns=CURVE_COLUMNS)


def write_plot_csv(points: pd.DataFrame, out_csv: str | os.PathLike) -> None:
    with atomic_path(out_csv) as tmp:
        points.to_csv(tmp, index=False, float_format="%.6g")
