"""Figure output shared by the analysis modules: laid out, written atomically, then closed."""

from __future__ import annotations

import os

from matplotlib.figure import Figure

from icsa.io import atomic_path


def save_figure(
    fig: Figure, out_png: str | os.PathLike, dpi: int = 120, data_label: str | None = None
) -> None:
    """Tight layout, write ``out_png`` through a temporary name, and free the figure.

    ``data_label`` names the data drawn ("synthetic Pitts30k-role city, test") in a footnote, so
    that a figure of the synthetic city is never taken for one of the real dataset."""
    import matplotlib.pyplot as plt  # the callers choose the backend before pyplot loads

    if data_label:
        fig.text(0.995, 0.005, f"data: {data_label}", ha="right", va="bottom", fontsize=7,
                 color="0.3")  # fmt: skip
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    else:
        fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
