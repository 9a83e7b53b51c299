"""What a Snakemake HTML report embeds, and the check that it holds the tables and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

TABLES = [f"table{n}.html" for n in range(1, 7)]


FIGURES = [
    "fig4_retrieval_examples.png",
    "fig5_singular_values.png",
    "fig6_tsne_none.png",
    "fig7_tsne_ia.png",
    "fig8_tsne_icsa.png",
    "fig9_channel_weights.png",
    "fig10_spatial_weights.png",
    "training_curves.png",
]


def report_results(report: Path) -> dict[str, dict]:
    """{file name: entry} of the results a Snakemake HTML report embeds."""
    page = report.read_text()
    start = page.index("var results = {") + len("var results = ")
    results, _ = json.JSONDecoder().raw_decode(page[start:])
    return {Path(k).name: v for k, v in results.items()}


def check_report(
    workdir: Path, report: str = "results/report.html", figures=FIGURES, tables=TABLES
) -> None:
    """The report holds the given figures and table pages, each with its caption."""
    by_name = report_results(workdir / report)
    assert set(figures) | set(tables) <= set(by_name), sorted(by_name)
    for name in [*figures, *tables]:
        caption = re.sub(r"<[^>]+>", "", by_name[name]["caption"])
        assert len(caption) > 150, (name, caption)
    if "fig10_spatial_weights.png" in figures:
        assert "inert" in by_name["fig10_spatial_weights.png"]["caption"]
    for name in tables:  # the table's own caption (workflow/report/tables.rst), as HTML
        number = name.removeprefix("table").removesuffix(".html")
        assert f"Table {number}" in by_name[name]["caption"], name
        assert by_name[name]["mime_type"] == "text/html"
    assert "NetVLAD L2-normalises" in (workdir / report).read_text()  # workflow description
