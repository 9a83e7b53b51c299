"""Checks of the figure rules' outputs (``check_figures``) and of what a Snakemake HTML report
embeds (``check_report``); neither assumes the run's sizes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from icsa.train.checkpoint import load_checkpoint

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


def check_figures(workdir: Path) -> None:
    """Every figure is a PNG and the data beside it is sane, whatever the run's sizes."""
    fig = workdir / "results" / "figures"
    for name in FIGURES:
        assert (fig / name).read_bytes()[:4] == b"\x89PNG" and (fig / name).stat().st_size > 2000
    stats = {
        str(z["label"]): z
        for z in (np.load(p) for p in sorted((fig / "data" / "local_stats").glob("*.npz")))
    }
    counts = json.loads((fig / "fig5_singular_values.json").read_text())
    assert set(counts) == set(stats) == {"VGG16", "VGG16+IA", "VGG16+ICSA"}
    sv = np.genfromtxt(
        fig / "fig5_singular_values.csv", delimiter=",", names=True, dtype=None, encoding=None
    )
    for model, z in stats.items():
        vals = sv["singular_value"][sv["model"] == model]
        assert vals.size == min(int(z["count"]), z["gram"].shape[0])
        assert np.all(np.diff(vals) <= 0) and vals[0] > 0 and vals[-1] >= 0
        ratios = sv["ratio"][sv["model"] == model]
        assert ratios[0] == 1.0 and np.all(ratios <= 1.0)
        assert counts[model]["above"]["0.1"] == int(np.sum(ratios > 0.1))
    tsne = np.load(fig / "fig6_8_tsne.npz")
    points = sum(min(len(z["sample"]), 2000) for z in stats.values())
    assert tsne["points"].shape == (points, 2) and np.isfinite(tsne["points"]).all()
    # Figs. 9-10: arrays of the module's shape; the trained ICSA's spatial weights all equal
    # and shrunk below 1 by weight decay alone, its channel weights not all equal.
    run = next((workdir / "results" / "runs").glob("*-vgg16-icsa-*"))
    state = load_checkpoint(run / "checkpoint_best.pt")["model_state"]
    c = state["attention.channel_weight"].numel()
    h, w = state["attention.spatial_weight"].shape[-2:]
    channel = np.loadtxt(fig / "fig9_channel_weights.csv", delimiter=",")
    spatial = np.loadtxt(fig / "fig10_spatial_weights.csv", delimiter=",", ndmin=2)
    assert channel.size == c and channel.shape[0] <= channel.shape[1] and spatial.shape == (h, w)
    assert np.ptp(spatial) < 1e-6 and spatial.max() < 1.0 and np.ptp(channel) > 0
    weights = json.loads((fig / "fig9_10_attention_weights.json").read_text())
    assert weights["spatial"]["spread"] < 1e-6 and weights["channel"]["spread"] > 0
    shown = np.genfromtxt(fig / "fig4_retrieval_examples.csv", delimiter=",", names=True,
                          dtype=None, encoding=None)  # fmt: skip
    assert len(shown) % 5 == 0 and len(shown) > 0 and set(shown["rank"]) == {1, 2, 3, 4, 5}
    assert (shown["hit"] == (shown["distance_m"] <= 25.0)).all()
