"""Training curves: triplet loss and validation recall per epoch, one line per run.

Reads each run's ``history.csv`` (written by ``icsa train``). Columns are recognised by name so
that the figure survives new metrics: ``epoch``; every column containing ``loss``; every column
containing ``recall`` (e.g. ``recall@5``). Empty cells (epoch 0 has no loss) are gaps. The
recall panel shows Recall@5 — the metric that picks the best checkpoint — when present,
otherwise the first recall column.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from icsa.analysis.plotting import save_figure  # noqa: E402
from icsa.errors import InputError  # noqa: E402
from icsa.io import atomic_path  # noqa: E402


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """A run's history as a DataFrame with an ``epoch`` column; InputError if malformed."""
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise InputError(f"{path}: unreadable history CSV ({err}); expected a header row") from err
    if "epoch" not in df.columns:
        raise InputError(f"{path}: columns {list(df.columns)}; expected an 'epoch' column")
    return df


def metric_columns(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(loss columns, recall columns) by name, in file order."""
    cols = [c for c in df.columns if c != "epoch"]
    return [c for c in cols if "loss" in c.lower()], [c for c in cols if "recall" in c.lower()]


def primary_recall(columns: list[str]) -> str | None:
    """The Recall@5 column if there is one (matches '5' as a whole number), else the first."""
    for c in columns:
        if re.search(r"(?<!\d)5(?!\d)", c):
            return c
    return columns[0] if columns else None


def plot_training_curves(
    histories: Mapping[str, pd.DataFrame],
    out_png: str | os.PathLike,
    data_label: str | None = None,
) -> None:
    """Left: loss columns per run; right: the primary validation recall per run."""
    fig, (ax_loss, ax_rec) = plt.subplots(1, 2, figsize=(10, 3.8))
    for run, df in histories.items():
        losses, recalls = metric_columns(df)
        for c in losses:
            ax_loss.plot(df["epoch"], df[c], marker="o", ms=3, label=f"{run} {c}")
        rc = primary_recall(recalls)
        if rc:
            ax_rec.plot(df["epoch"], df[rc], marker="o", ms=3, label=f"{run} {rc}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Training loss")
    ax_rec.set_xlabel("epoch")
    ax_rec.set_ylabel("validation recall")
    ax_rec.set_title("Validation recall (best checkpoint by Recall@5)")
    for ax in (ax_loss, ax_rec):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if ax.lines:
            ax.legend(fontsize=6)
    save_figure(fig, out_png, data_label=data_label)


def write_curves_csv(histories: Mapping[str, pd.DataFrame], out_csv: str | os.PathLike) -> None:
    """Long format: run, epoch, metric, value (loss and recall columns only)."""
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "epoch", "metric", "value"])
        for run, df in histories.items():
            losses, recalls = metric_columns(df)
            for _, row in df.iterrows():
                for c in losses + recalls:
                    if pd.notna(row[c]):  # epoch 0 (before training) has no loss
                        w.writerow([run, row["epoch"], c, f"{row[c]:.9g}"])
