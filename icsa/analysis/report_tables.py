"""Tables for the HTML report: a results table (CSV, plus its Markdown) as one small HTML page.

Snakemake's report shows images and HTML inline but offers other files only for download, so
each table is rendered to a self-contained HTML page (escaped cells, no scripts) that the
report embeds next to its caption.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from icsa.errors import InputError
from icsa.io import atomic_path

STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:12px}"
    "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 8px;"
    "text-align:right}th{background:#eee}pre{background:#f6f6f6;padding:8px}"
)


def render_table_html(
    csv_path: str | os.PathLike,
    out_html: str | os.PathLike,
    title: str,
    md_path: str | os.PathLike | None = None,
) -> None:
    """Write ``title``, the CSV as an HTML table and (if given) the Markdown, preformatted."""
    csv_path = Path(csv_path)
    try:
        df = pd.read_csv(csv_path, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, FileNotFoundError) as err:
        raise InputError(
            f"{csv_path}: unreadable table ({err}); expected a CSV with a header"
        ) from err
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h3>{html.escape(title)}</h3>",
        df.to_html(index=False, escape=True, border=0),
        f"<p>Source: {html.escape(csv_path.name)} ({len(df)} rows)</p>",
    ]
    if md_path is not None and Path(md_path).is_file():
        parts.append(f"<pre>{html.escape(Path(md_path).read_text())}</pre>")
    parts.append("</body></html>")
    with atomic_path(out_html) as tmp:
        tmp.write_text("\n".join(parts) + "\n")
