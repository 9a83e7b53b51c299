"""Markdown and JSON renderings of a built table (ours beside the paper's numbers)."""

from __future__ import annotations

import math
import os
import re
from typing import Any

import pandas as pd

from icsa.io import atomic_path, write_json
from icsa.tables.comparisons import (
    PREFIXES,
    format_difference,
    format_mde,
    format_query_interval,
    interval_note,
    parse_seeds,
)
from icsa.tables.compose import SELECTION_FLAGS, Statistics
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


def row_label(rec: dict[str, Any]) -> str:
    """How plots and `dvc metrics show` name a table row: "VGG16+ICSA block5"."""
    return rec.get("module") or f"{rec['network']} {rec['block']}"


def recall_columns(df: pd.DataFrame) -> list[int]:
    return sorted(int(m.group(1)) for c in df.columns if (m := re.fullmatch(r"R@(\d+)", c)))


def run_table_markdown(df: pd.DataFrame, spec: dict[str, Any], stats: Statistics) -> str:
    """Tables 1, 3–6: network, block, then per N ours and (where the paper has it) the paper's."""
    ns = recall_columns(df)
    header = ["network", "lowest trained block"]
    paper_on = paper_evalset(df)
    for n in ns:
        header.append(f"R@{n}")
        if f"paper_R@{n}" in df.columns:
            header.append(f"R@{n} paper ({paper_on})" if paper_on else f"R@{n} paper")
    columns = difference_headers(spec, stats)
    header += [columns["dR@1"], "(queries only)", "MDE"]
    by_block = "dR@1_block" in df.columns and df["block_baseline"].fillna("").astype(bool).any()
    if by_block:
        header += [columns["dR@1_block"], "(queries only)", "MDE"]
    selection = "best_epoch" in df.columns
    if selection:
        header.append("best epoch / trained")
    rows = []
    for rec in df.to_dict("records"):
        cells = [rec["network"], rec["block"]]
        for n in ns:
            cells.append(format_mean_std(MeanStd(rec[f"R@{n}"], rec[f"R@{n}_std"], rec["seeds"])))
            if f"paper_R@{n}" in rec:
                cells.append(_fmt(rec[f"paper_R@{n}"]))
        if rec["baseline"]:
            cells += [f"{format_difference(rec, 'dR@1')} vs {rec['baseline']}",
                      format_query_interval(rec, "dR@1"), format_mde(rec, "dR@1")]  # fmt: skip
        else:
            cells += ["(baseline)" if rec["attention"] == spec.get("baseline") else "–", "", ""]
        if by_block:
            own = str(rec.get("block_baseline") or "") == ""
            cells += [format_difference(rec, "dR@1_block") or ("(baseline)" if own else "–"),
                      format_query_interval(rec, "dR@1_block"),
                      format_mde(rec, "dR@1_block")]  # fmt: skip
        if selection:
            marks = "".join(f" ⚑{f}" for f in _flags(rec.get("selection_flags")))
            cells.append(f"{rec['best_epoch']} / {rec['trained_epochs']}{marks}")
        rows.append(cells)
    seeds = spec.get("seeds", [])
    label = spec.get("evalset_label") or spec["evalset"]
    notes = [
        f"Evaluation set (ours): {label} (`{spec['evalset']}`). Recall@N in %; seeds: "
        f"{', '.join(map(str, seeds))}"
        + (" (cells: mean ± std over seeds)." if len(seeds) > 1 else "."),
        interval_note(stats.confidence, len(seeds), family_size(df), stats.multiplicity,
                      stats.power),  # fmt: skip
        f"Paper: the published numbers, measured on {paper_on or 'the paper’s data'} "
        "(config/paper_values.yaml)"
        + (f", not on our {label}: compare trends, not values." if label != spec["evalset"]
           else "."),
    ]  # fmt: skip
    if len(seeds) > 1:
        notes.append(
            "Per-seed values (each seed's Recall@1 and difference) are in the CSV, JSON and HTML "
            "table. They depend on the machine: training trajectories follow the CPU's (or GPU's) "
            "kernels, so another CPU gives other per-seed values; a conclusion that holds only on "
            "one machine is not a conclusion."
        )
    notes += protocol_notes(df, spec)
    title = f"### Table {spec['table'].removeprefix('table')}: {spec.get('title', '')}".rstrip(": ")
    return "\n\n".join([title, _markdown_grid(header, rows), *notes]) + "\n"


def difference_headers(spec: dict[str, Any], stats: Statistics) -> dict[str, str]:
    """The Markdown header of each ΔR@1 column."""
    ci = f"{stats.confidence:.0%} CI"
    return {
        "dR@1": f"ΔR@1 vs baseline [{ci}]",
        "dR@1_block": f"ΔR@1 vs block {spec.get('block_baseline')} [{ci}]",
    }


def seed_details(df: pd.DataFrame, spec: dict[str, Any], stats: Statistics) -> list[dict[str, str]]:
    """Per row, {column header: each seed's values} for the HTML page (several seeds only)."""
    columns = {"R@1": "R@1", **difference_headers(spec, stats)}
    out = []
    for rec in df.to_dict("records"):
        ids = str(rec.get("seed_ids") or "").split("/")
        row = {}
        for name, header in columns.items():
            cell = rec.get(f"{name}_seeds")
            if isinstance(cell, str) and cell.count("/") >= 1:  # several seeds
                values = " · ".join(cell.split("/"))
                row[header] = f"seeds {'/'.join(ids)}: {values}"
        out.append(row)
    return out


def family_size(df: pd.DataFrame) -> int:
    """How many ΔR@1 comparisons the table makes (the family its marks are adjusted over)."""
    return int(sum(df[f"{p}_p"].notna().sum() for p in PREFIXES if f"{p}_p" in df.columns))


def paper_evalset(df: pd.DataFrame) -> str:
    """The paper's evaluation data for a table ("real Pitts30k-test"), '' if not recorded."""
    if "paper_evalset" not in df.columns:
        return ""
    values = sorted({str(v) for v in df["paper_evalset"].fillna("") if str(v)})
    return ", ".join(values)


def _flags(value: Any) -> list[str]:
    """A row's ``selection_flags`` cell ("first-epoch;stopped-early", '' or NaN) as a list."""
    if not isinstance(value, str):
        return []
    return [flag for flag in value.split(";") if flag]


def protocol_notes(df: pd.DataFrame, spec: dict[str, Any]) -> list[str]:
    """What a reader must know to read the rows: checkpoint selection, rules, inert halves."""
    notes = []
    if "best_epoch" in df.columns:
        flagged = sorted({f for value in df["selection_flags"] for f in _flags(value)})
        notes.append(
            "Best epoch: the trained epoch (>= 1; the untrained model is never selected) with the "
            "highest validation Recall@5, per seed, out of the epochs trained."
            + "".join(f" ⚑{f}: {SELECTION_FLAGS[f]}." for f in flagged)
        )
    if "time_rule" in df.columns and df["time_rule"].fillna("").astype(str).ne("").any():
        notes.append(
            "TokyoTM rule: for each query, the database images captured at the query's own time "
            "are removed from the ranking before the 25 m test (the MATLAB reference's "
            "nnSearchPostprocess); a query's same-time images are neither hits nor misses."
        )
    attentions = {row["attention"] for row in spec.get("rows", [])}
    if {"icsa", "ch"} <= attentions:
        notes.append(
            "ICSA vs CH: under NetVLAD ICSA's spatial half is exactly inert (every local "
            "descriptor is L2-normalised first, so a positive per-location scale changes nothing "
            "and its gradient is zero). ICSA and CH trained from the same start with the same "
            "seed give the same descriptors (tests/test_selection.py); an ICSA-vs-CH difference "
            "can only be numerical noise, not an effect of spatial attention — the paper's "
            "ICSA-vs-CH row does not show that spatial attention helps."
        )
    return notes


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


# What `dvc metrics show` lists per row: the numbers a reader compares between commits (not the
# paper's constants, interval bounds or bookkeeping such as best epochs).
SUMMARY_METRIC = re.compile(r"R@\d+|dR@1(_block)?(_mde)?|params|size_kb|time_vs_icsa")
# "/"-joined per-seed columns, listed per seed as `R@1_s0`, `dR@1_s0`, … (seed ids from `seed_ids`).
PER_SEED = ("R@1", "dR@1", "dR@1_block")


def _per_seed(rec: dict[str, Any]) -> dict[str, float]:
    ids = str(rec.get("seed_ids") or "").split("/")
    out = {}
    for name in PER_SEED:
        values = parse_seeds(rec.get(f"{name}_seeds"))
        out.update({f"{name}_s{i}": v for i, v in zip(ids, values)})
    return out


def summary_json(df: pd.DataFrame) -> dict[str, Any]:
    """A flat {row label: {metric: value}} view for `dvc metrics show` (a row's ΔR@1 only where
    it is compared: NaN values are left out), with each seed's R@1 and differences."""
    out: dict[str, Any] = {}
    for rec in df.to_dict("records"):
        out[row_label(rec)] = {
            **{
                k: v
                for k, v in rec.items()
                if SUMMARY_METRIC.fullmatch(str(k))
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
                and not (isinstance(v, float) and math.isnan(v))
            },
            **_per_seed(rec),
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
