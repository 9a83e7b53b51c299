"""The table page of the report (icsa/tables/html.py): the Markdown of a table as real HTML."""

from __future__ import annotations

import re

from icsa.tables.html import markdown_table_html, write_table_html

MARKDOWN = """### Table 5: Partially <trained> VGG16

| network | block | R@1 | R@1 paper (real Pitts30k-test) | ΔR@1 vs baseline [95% CI] |
|---|---|---|---|---|
| VGG16 | none | 28.1 ± 0.4 | 80.5 | (baseline) |
| VGG16+ICSA | none | 31.0 ± 0.9 | 76.7 | +2.9 [+1.1, +4.6]* vs VGG16 |
| VGG16+ICSA | block5 | 27.0 ± 1.1 | 85.3 | -1.1 [-3.0, +0.8] vs VGG16 |
| VGG16+ICSA | block3 | 22.0 ± 0.5 | 86.1 | -4.1 [-5.0, -3.2]* vs VGG16 |

Evaluation set (ours): synthetic Pitts30k-role city, test (`pitts30k-test`).
"""


def _cells(page: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in rows]


def test_page_is_the_markdown_table_escaped_with_marks(tmp_path):
    page = markdown_table_html(MARKDOWN)
    assert "<h3>Table 5: Partially &lt;trained&gt; VGG16</h3>" in page and "<script" not in page
    cells = _cells(page)
    assert cells[0][3] == "R@1 paper (real Pitts30k-test)" and len(cells) == 5
    assert [row[2] for row in cells[1:]] == ["28.1 ± 0.4", "31.0 ± 0.9", "27.0 ± 1.1",
                                             "22.0 ± 0.5"]  # fmt: skip
    # Only marked differences are highlighted, by sign: a harm is never green.
    assert page.count("class=gain") == 1 and "class=gain>+2.9 [+1.1, +4.6]*" in page
    assert page.count("class=harm") == 1 and "class=harm>-4.1 [-5.0, -3.2]*" in page
    assert page.count("<td class=paper>") == 4 and "<th class=paper>" in page
    assert "<code>pitts30k-test</code>" in page and "synthetic Pitts30k-role city" in page
    write_table_html(MARKDOWN, tmp_path / "t.html", title="Own title")
    assert "<h3>Own title</h3>" in (tmp_path / "t.html").read_text()


def test_page_shows_each_seed_under_its_cell_and_embeds_the_figure():
    details = [{}, {"R@1": "seeds 0/1: 30.1 · 31.9"}, {}, {}]
    png = b"\x89PNG fake bytes"
    page = markdown_table_html(MARKDOWN, details=details, figure_png=png)
    row = _cells(page)[2]
    assert row[2] == "31.0 ± 0.9<div class=seeds>seeds 0/1: 30.1 · 31.9</div>"
    assert page.count("class=seeds") == 1
    assert "src='data:image/png;base64,iVBORyBmYWtlIGJ5dGVz'" in page
    assert page.index("</table>") < page.index("<img") < page.index("<p class=note>")
