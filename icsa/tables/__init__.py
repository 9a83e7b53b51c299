"""Tables 1–6 of the paper from the workflow's metrics files, with the paper's numbers beside ours.

``stats`` (mean ± std over seeds, paired bootstraps over seeds × queries), ``compose`` (tables
from metrics and efficiency files), ``render`` (Markdown, CSV, JSON). The CLI is
``icsa tables build``.
"""

from icsa.tables.compose import (
    Statistics,
    build_efficiency_table,
    build_run_table,
    load_paper,
    network_label,
)
from icsa.tables.stats import (
    MeanStd,
    format_mean_std,
    hits_at,
    mean_std,
    paired_bootstrap,
    seed_query_bootstrap,
)

__all__ = [
    "MeanStd",
    "Statistics",
    "build_efficiency_table",
    "build_run_table",
    "format_mean_std",
    "hits_at",
    "load_paper",
    "mean_std",
    "network_label",
    "paired_bootstrap",
    "seed_query_bootstrap",
]
