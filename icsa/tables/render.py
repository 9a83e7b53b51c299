"""Markdown and JSON renderings of a built table (ours beside the paper's numbers)."""

from __future__ import annotations

import math
import os
import re
from typing import Any

import pandas as pd

from icsa.io import atomic_path, write_json
from icsa.tables.compose import Statistics
from icsa.tables.stats import MeanStd, format_mean_std


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown_grid(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def recall_columns(df: pd.DataFrame) -> list[int]:
    return sorted(int(m.group(1)) for c in df.columns if (m := re.fullmatch(r"R@(\d+)", c)))


def run_table_markdown(df: pd.DataFrame, spec: dict[str, Any], stats: Statistics) -> str:
    """Tables 1, 3–6: network, block, then per N ours and (where the paper has it) the paper's."""
    ns = recall_columns(df)
    header = ["network", "lowest trained block"]
    for n in ns:
        header.append(f"R@{n}")
        if f"paper_R@{n}" in df.columns:
            header.append(f"R@{n} paper")
    header.append(f"ΔR@1 vs baseline [{stats.confidence:.0%} CI]")
    rows = []
    for rec in df.to_dict("records"):
        cells = [rec["network"], rec["block"]]
        for n in ns:
            cells.append(format_mean_std(MeanStd(rec[f"R@{n}"], rec[f"R@{n}_std"], rec["seeds"])))
            if f"paper_R@{n}" in rec:
                cells.append(_fmt(rec[f"paper_R@{n}"]))
        if rec["baseline"]:
            cells.append(
                f"{rec['dR@1']:+.1f} [{rec['dR@1_low']:+.1f}, {rec['dR@1_high']:+.1f}]"
                f" vs {rec['baseline']}"
            )
        else:
            cells.append("(baseline)" if rec["attention"] == spec.get("baseline") else "–")
        rows.append(cells)
    seeds = spec.get("seeds", [])
    notes = [
        f"Evaluation set: {spec['evalset']}. Recall@N in %; seeds: {', '.join(map(str, seeds))}"
        + (" (cells: mean ± std over seeds)." if len(seeds) > 1 else "."),
        f"ΔR@1: Recall@1 minus the baseline row's (same backbone, block and seed), percentage "
        f"points, with a paired bootstrap {stats.confidence:.0%} interval over queries "
        f"({stats.bootstrap_samples} resamples, seed {stats.seed}). With several seeds each model "
        "is paired with the baseline of its own seed and the per-query differences are averaged "
        "over seeds before resampling: the interval reflects query sampling; the ± std shows "
        "the seed-to-seed spread.",
        "Paper: the published numbers (Pitts30k-test; Table 6: TokyoTM), config/paper_values.yaml.",
    ]
    title = f"### Table {spec['table'].removeprefix('table')}: {spec.get('title', '')}".rstrip(": ")
    return "\n\n".join([title, _markdown_grid(header, rows), *notes]) + "\n"


def efficiency_markdown(df: pd.DataFrame, spec: dict[str, Any], metadata: dict[str, Any]) -> str:
    """Table 2: sizes (must match the paper: arithmetic) and times (compare ratios)."""
    header = ["module", "params", "size/kB", "size/kB paper", "time/ms (median)",
              "time / ICSA", "time paper", "time / ICSA paper"]  # fmt: skip
    rows = [
        [
            rec["module"],
            str(rec["params"]),
            _fmt(rec["size_kb"]),
            _fmt(rec["paper_size_kb"]),
            _fmt(rec["time_ms"], 3),
            _fmt(rec["time_vs_icsa"], 2),
            _fmt(rec["paper_time"], 0),
            _fmt(rec["paper_time_vs_icsa"], 2),
        ]  # fmt: skip
        for rec in df.to_dict("records")
    ]
    first = df.iloc[0] if len(df) else {}
    shape = "×".join(str(metadata.get(k, "?")) for k in ("channels", "height", "width"))
    notes = [
        f"Input {shape}, batch size {first.get('batch_size', '?')}, device "
        f"{first.get('device', '?')} ({metadata.get('cpu', '')}, torch {metadata.get('torch', '')},"
        f" {metadata.get('threads', '?')} threads). kB = 1024 bytes of float32 parameters.",
        "The paper's columns are for 512×30×40 (VGG16 at 480×640); its times have no stated unit:"
        " compare the ratios to ICSA, not absolute values.",
    ]
    title = f"### Table 2: {spec.get('title', '')}".rstrip(": ")
    return "\n\n".join([title, _markdown_grid(header, rows), *notes]) + "\n"


def summary_json(df: pd.DataFrame) -> dict[str, Any]:
    """A flat {row label: {metric: value}} view for `dvc metrics show` (nan → None)."""
    out: dict[str, Any] = {}
    for rec in df.to_dict("records"):
        label = rec.get("module") or f"{rec['network']} {rec['block']}"
        out[label] = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in rec.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    return out


def write_outputs(
    df: pd.DataFrame,
    markdown: str,
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    out_json: str | os.PathLike | None = None,
) -> None:
    """CSV (full precision), Markdown and optional JSON, each written atomically."""
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_md) as tmp:
        tmp.write_text(markdown)
    if out_json is not None:
        write_json(out_json, summary_json(df))
