"""A run table as a figure: what a reader would rather look at than a grid of intervals.

Three panels, from the built table (``compose.build_run_table``) alone:

1. **Recall@1, ours** — each seed's value as a point and the interval of the row's mean
   (``R@1_low``/``R@1_high``, the same analyses as the differences), one line per network. The
   x axis is the lowest trained block where the table varies it (Table 5: none, 5, 4 … 1), else
   the row (Table 1: one entry per module).
2. **ΔR@1 vs baseline** — each compared row's difference with its interval; a difference marked
   after the table's multiplicity adjustment is coloured by its sign (gain green, harm red),
   an unmarked one grey, so that a harm never reads as a success.
3. **The paper's Recall@1** on its own axis, labelled with the data it was measured on (real
   Pitts30k for Table 5): a trend to compare, never values on our evaluation set.
"""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from icsa.analysis.plotting import save_figure  # noqa: E402
from icsa.tables.comparisons import parse_seeds  # noqa: E402
from icsa.tables.render import paper_evalset  # noqa: E402

GAIN, HARM, UNMARKED = "#1a9641", "#d7191c", "0.55"


def _x_positions(df: pd.DataFrame) -> tuple[str, list[str]]:
    """("block", ordered blocks) when some network appears at several blocks, else ("row", …)."""
    varies = df.groupby(["network", "aggregation"])["block"].nunique().max() > 1
    key = "block" if varies else "row"
    labels = df["block"] if varies else df["network"] + " " + df["block"]
    return key, list(dict.fromkeys(labels))  # table order: none, block5, … as configured


def _row_x(rec: dict[str, Any], key: str, order: list[str]) -> int:
    label = rec["block"] if key == "block" else f"{rec['network']} {rec['block']}"
    return order.index(label)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(float(value))


def plot_run_table(
    df: pd.DataFrame, out_png: str | os.PathLike, title: str, data_label: str | None = None
) -> None:
    """The three panels of the module docstring, written atomically to ``out_png``."""
    key, order = _x_positions(df)
    records = df.to_dict("records")
    series = list(dict.fromkeys(df["network"])) if key == "block" else ["all rows"]
    colours = {name: f"C{i}" for i, name in enumerate(series)}
    width = max(9.0, 1.1 * len(order) + 6.0)
    fig, (ax_ours, ax_diff, ax_paper) = plt.subplots(
        1, 3, figsize=(width, 4.0), gridspec_kw={"width_ratios": [1.3, 1.1, 1.0]}
    )
    offsets = {name: 0.12 * (i - (len(series) - 1) / 2) for i, name in enumerate(series)}
    for name in series:
        rows = [r for r in records if key != "block" or r["network"] == name]
        xs = np.array([_row_x(r, key, order) for r in rows], dtype=float) + offsets[name]
        means = np.array([r["R@1"] for r in rows])
        low = means - np.array([r.get("R@1_low", math.nan) for r in rows])
        high = np.array([r.get("R@1_high", math.nan) for r in rows]) - means
        ax_ours.errorbar(xs, means, yerr=[low, high], fmt="o-" if key == "block" else "o",
                         color=colours[name], capsize=3, label=name, zorder=3)  # fmt: skip
        for x, rec in zip(xs, rows):
            seeds = parse_seeds(rec.get("R@1_seeds"))
            jitter = np.linspace(-0.04, 0.04, len(seeds)) if len(seeds) > 1 else [0.0]
            ax_ours.scatter(x + np.asarray(jitter), seeds, s=12, color=colours[name],
                            alpha=0.45, zorder=2)  # fmt: skip
        paper = [(x, r["paper_R@1"]) for x, r in zip(xs, rows) if _finite(r.get("paper_R@1"))]
        if paper:
            px, py = zip(*paper)
            ax_paper.plot(px, py, "s--" if key == "block" else "s", color=colours[name],
                          label=name)  # fmt: skip
    compared = [r for r in records if _finite(r.get("dR@1"))]
    for rec in compared:
        x = _row_x(rec, key, order) + offsets.get(rec["network"], 0.0)
        colour = (GAIN if rec["dR@1"] > 0 else HARM) if rec.get("dR@1_marked") else UNMARKED
        err = [[rec["dR@1"] - rec["dR@1_low"]], [rec["dR@1_high"] - rec["dR@1"]]]
        ax_diff.errorbar([x], [rec["dR@1"]], yerr=err, fmt="o", color=colour, capsize=3)
        ax_diff.annotate(f"vs {rec['baseline']}", (x, rec["dR@1_high"]), fontsize=6,
                         ha="center", va="bottom", color="0.3")  # fmt: skip
    ax_diff.axhline(0.0, color="0.2", lw=0.8)
    seeds = int(df["seeds"].max()) if len(df) else 0
    interval = "interval of the mean" if seeds > 1 else "queries-only interval (1 seed)"
    ax_ours.set_title(f"Recall@1, ours: seeds (dots), {interval}", fontsize=9)
    ax_diff.set_title("ΔR@1 vs baseline (green/red: marked gain/harm)", fontsize=9)
    paper_on = paper_evalset(df)
    ax_paper.set_title(f"Paper's Recall@1 ({paper_on or 'the paper’s data'})", fontsize=9)
    if not ax_paper.lines:
        ax_paper.text(0.5, 0.5, "no published values for these rows", ha="center",
                      va="center", transform=ax_paper.transAxes, fontsize=8)  # fmt: skip
    xlabel = "lowest trained block" if key == "block" else ""
    for ax in (ax_ours, ax_diff, ax_paper):
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([o.removeprefix("block") for o in order],
                           rotation=0 if key == "block" else 30, ha="center" if key == "block"
                           else "right", fontsize=7)  # fmt: skip
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", alpha=0.3)
    ax_ours.set_ylabel("Recall@1 (%)")
    ax_diff.set_ylabel("ΔR@1 (points)")
    ax_paper.set_ylabel("Recall@1 (%), published")
    for ax in (ax_ours, ax_paper):
        if ax.lines and key == "block":
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, out_png, data_label=data_label)


def plot_efficiency_table(df: pd.DataFrame, out_png: str | os.PathLike, title: str) -> None:
    """Table 2 as bars: size in kB (log scale) and time relative to ICSA, ours beside the
    paper's (sizes are arithmetic and must agree; times only as ratios)."""
    fig, (ax_size, ax_time) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(df))
    for ax, ours, theirs, label in (
        (ax_size, "size_kb", "paper_size_kb", "size (kB, symlog)"),
        (ax_time, "time_vs_icsa", "paper_time_vs_icsa", "forward time / ICSA's"),
    ):
        ax.bar(x - 0.2, df[ours], width=0.4, label="ours", color="C0")
        ax.bar(x + 0.2, df[theirs], width=0.4, label="paper", color="C7")
        ax.set_xticks(x)
        ax.set_xticklabels(df["module"], fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    ax_size.set_yscale("symlog", linthresh=1.0)  # "none" has 0 kB
    fig.suptitle(title, fontsize=10)
    save_figure(fig, out_png)
