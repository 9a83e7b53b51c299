"""A built table as a self-contained HTML page for the Snakemake report.

The page renders the table's Markdown (``render.py``: the paper-style table, ours beside the
paper's numbers, then its notes) as a real HTML ``<table>``: Snakemake's report embeds HTML
results inline, while a Markdown or CSV file would only be offered for download or shown as
raw text. Marked differences (``*`` in the Markdown) are highlighted by sign (a gain green, a
harm red), the paper's columns are shaded, each seed's values can be shown under a cell, the
table's figure (a PNG) can be embedded after it, every cell is escaped and the page has no
scripts.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence

from icsa.io import atomic_path

STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:12px;max-width:1400px}"
    "table{border-collapse:collapse;margin:8px 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right;white-space:nowrap}"
    "td:first-child,td:nth-child(2){text-align:left}th{background:#eee}"
    ".paper{background:#f3f3ff;color:#334}"
    ".gain{font-weight:bold;background:#e6f5e6}.harm{font-weight:bold;background:#fbe3e3}"
    ".seeds{font-size:11px;color:#666}img.figure{max-width:100%;margin:8px 0}"
    "p.note{color:#333;max-width:1100px}"
)
MARKED = re.compile(r"^([+\-−])[^\[]*\[[^\]]*\]\*")  # '+3.1 [+1.2, +5.0]*': marked, by sign


def _cell_class(cell: str, paper: bool) -> str:
    if paper:
        return "paper"
    mark = MARKED.match(cell)
    return "" if mark is None else "gain" if mark.group(1) == "+" else "harm"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _inline(text: str) -> str:
    """Escape, then render the Markdown the notes use: `code`."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def markdown_table_html(
    markdown: str,
    title: str | None = None,
    details: Sequence[dict[str, str]] | None = None,
    figure_png: bytes | None = None,
) -> str:
    """The HTML page of one table's Markdown (``### title``, a ``|`` grid, note paragraphs).

    ``details``: per body row, {column header: small text shown under that cell} (each seed's
    values). ``figure_png``: an image embedded (as a data URI) right after the table."""
    blocks = [b.strip() for b in markdown.strip().split("\n\n") if b.strip()]
    heading = title
    body: list[str] = []
    for block in blocks:
        lines = block.splitlines()
        if block.startswith("### "):
            heading = heading or block[4:].strip()
            continue
        if len(lines) >= 2 and lines[0].startswith("|") and set(lines[1]) <= set("|-: "):
            header = _cells(lines[0])
            paper = [i for i, h in enumerate(header) if "paper" in h]
            out = ["<table>", "<thead><tr>"]
            out += [f"<th{' class=paper' if i in paper else ''}>{html.escape(h)}</th>"
                    for i, h in enumerate(header)]  # fmt: skip
            out.append("</tr></thead><tbody>")
            for r, line in enumerate(lines[2:]):
                extra = details[r] if details is not None and r < len(details) else {}
                row = []
                for i, cell in enumerate(_cells(line)):
                    cls = _cell_class(cell, i in paper)
                    text = html.escape(cell)
                    if extra.get(header[i]):
                        text += f"<div class=seeds>{html.escape(extra[header[i]])}</div>"
                    row.append(f"<td{f' class={cls}' if cls else ''}>{text}</td>")
                out.append("<tr>" + "".join(row) + "</tr>")
            out.append("</tbody></table>")
            body.append("\n".join(out))
            if figure_png is not None:
                data = base64.b64encode(figure_png).decode("ascii")
                body.append(f"<img class=figure alt='{html.escape(heading or 'figure')}' "
                            f"src='data:image/png;base64,{data}'>")  # fmt: skip
        else:
            body.append(f"<p class=note>{_inline(' '.join(lines))}</p>")
    heading = heading or "Table"
    return "\n".join(
        [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(heading)}</title><style>{STYLE}</style></head><body>",
            f"<h3>{html.escape(heading)}</h3>",
            *body,
            "</body></html>",
        ]
    )


def write_table_html(
    markdown: str,
    out_html: str | os.PathLike,
    title: str | None = None,
    details: Sequence[dict[str, str]] | None = None,
    figure_png: bytes | None = None,
) -> None:
    """Write the page of :func:`markdown_table_html` atomically."""
    with atomic_path(out_html) as tmp:
        tmp.write_text(markdown_table_html(markdown, title, details, figure_png) + "\n")
