"""`icsa tables build`: one of the paper's tables from metrics files (what the workflow calls).

    icsa tables build --spec JSON|@FILE [--statistics JSON] --paper config/paper_values.yaml
        [--results results]
        --out-csv results/table5.csv --out-md results/table5.md [--out-json results/table5.json]
        [--out-html results/table5.html] [--out-png results/table5.png]
        [--out-recall-csv results/table5_recall.csv --out-curves-csv results/table5_curves.csv]

The PNG is the table as a figure (icsa/tables/figure.py), also embedded in the HTML page.
The two CSVs are the data of the table's DVC plots (icsa/tables/plots.py); Table 2 measures
modules, not trained runs, so its plot files hold the header only.

The spec (written by workflow/rules/common.smk, see icsa/tables/compose.py) names the table, its
evaluation set and the runs of every row; an efficiency table (``"kind": "efficiency"``, Table 2)
lists modules and reads the efficiency file. Every input is found in the results folder by
:mod:`icsa.layout` (each run's metrics, per-query ranks and history.json; ``efficiency.json``), as
the workflow wrote it: by hand, the spec and the paper's values are all a table needs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icsa import layout
from icsa.errors import InputError
from icsa.io import parse_json_object


def register(subparsers: argparse._SubParsersAction) -> None:
    tables = subparsers.add_parser("tables", help="the paper's Tables 1-6 from metrics files")
    sub = tables.add_subparsers(dest="tables_command", required=True)
    p = sub.add_parser("build", help="build one table (CSV, Markdown, JSON)",
                       description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--spec", required=True, help="table spec as JSON, or @file.json")
    p.add_argument(
        "--statistics",
        default="{}",
        help='how differences are judged, JSON: {"confidence", "multiplicity", "power"}',
    )
    p.add_argument("--paper", required=True, type=Path, help="config/paper_values.yaml")
    p.add_argument("--results", type=Path, default=Path(layout.RESULTS),
                   help="the results folder: each run's metrics and history, or Table 2's "
                        "efficiency file, are found in it by icsa.layout (default: "
                        "%(default)s)")  # fmt: skip
    p.add_argument("--out-csv", required=True, type=Path)
    p.add_argument("--out-md", required=True, type=Path)
    p.add_argument("--out-json", type=Path, default=None, help="flat metrics for DVC")
    p.add_argument("--out-html", type=Path, default=None,
                   help="the table as an HTML page (for the Snakemake report)")  # fmt: skip
    p.add_argument("--out-png", type=Path, default=None,
                   help="the table as a figure (embedded in --out-html too)")  # fmt: skip
    p.add_argument("--out-recall-csv", type=Path, default=None,
                   help="Recall@N per row, long format (a DVC plot)")  # fmt: skip
    p.add_argument("--out-curves-csv", type=Path, default=None,
                   help="training curve of every run behind the rows (a DVC plot)")  # fmt: skip
    p.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    import pandas as pd

    from icsa.io import read_json
    from icsa.pipeline import EFFICIENCY_TABLE
    from icsa.tables import plots
    from icsa.tables.compose import (
        Statistics,
        build_efficiency_table,
        build_run_table,
        load_paper,
    )
    from icsa.tables.render import (
        efficiency_markdown,
        run_table_markdown,
        seed_details,
        write_outputs,
    )

    spec = parse_json_object(args.spec, "--spec")
    stats = Statistics.from_dict(parse_json_object(args.statistics, "--statistics"))
    paper = load_paper(args.paper)
    if spec.get("kind") == EFFICIENCY_TABLE:
        efficiency = Path(layout.efficiency_file(args.results))
        df = build_efficiency_table(spec, efficiency, paper)
        markdown = efficiency_markdown(df, spec, read_json(efficiency).get("metadata", {}))
        recall = pd.DataFrame(columns=plots.RECALL_COLUMNS)
        curves = pd.DataFrame(columns=plots.CURVE_COLUMNS)
        details = None
        draw = _efficiency_figure
    elif spec.get("rows"):
        df = build_run_table(spec, args.results, paper, stats, selection=True)
        markdown = run_table_markdown(df, spec, stats)
        recall = plots.recall_curves(df)
        curves = plots.training_curves(df, spec, args.results)
        details = seed_details(df, spec, stats)
        draw = _run_figure
    else:
        raise InputError(
            f"--spec: table {spec.get('table')!r} has no rows; expected a run table spec with "
            f"rows, or kind {EFFICIENCY_TABLE!r} with attentions"
        )
    write_outputs(df, markdown, args.out_csv, args.out_md, args.out_json)
    title = markdown.splitlines()[0].removeprefix("### ")
    if args.out_png is not None:
        draw(df, spec, args.out_png, title)
    if args.out_html is not None:
        from icsa.tables.html import write_table_html

        png = args.out_png.read_bytes() if args.out_png is not None else None
        write_table_html(markdown, args.out_html, details=details, figure_png=png)
    if args.out_recall_csv is not None:
        plots.write_plot_csv(recall, args.out_recall_csv)
    if args.out_curves_csv is not None:
        plots.write_plot_csv(curves, args.out_curves_csv)
    print(markdown)
    return 0


def _run_figure(df, spec: dict, out_png: Path, title: str) -> None:
    from icsa.tables.figure import plot_run_table

    plot_run_table(df, out_png, title, data_label=spec.get("evalset_label") or spec["evalset"])


def _efficiency_figure(df, spec: dict, out_png: Path, title: str) -> None:
    from icsa.tables.figure import plot_efficiency_table

    plot_efficiency_table(df, out_png, title)
