"""Figure output shared by the analysis modules: laid out, written atomically, then closed."""

from __future__ import annotations

import os

from matplotlib.figure import Figure

from icsa.io import atomic_path


def save_figure(fig: Figure, out_png: str | os.PathLike, dpi: int = 120) -> None:
    """Tight layout, write ``out_png`` through a temporary name, and free the figure."""
    import matplotlib.pyplot as plt  # the callers choose the backend before pyplot loads

    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
