"""Tables 1–6 of the paper from the workflow's metrics files, with the paper's numbers beside ours.

``stats`` (mean ± std over seeds), ``inference`` (paired ΔR@1 intervals valid at few seeds),
``multiplicity`` (the table's marks), ``compose`` (tables from metrics and efficiency files),
``render`` (Markdown, CSV, JSON), ``figure`` (a run table as a figure). The CLI is
``icsa tables build``.
"""

from icsa.tables.compose import (
    Statistics,
    build_efficiency_table,
    build_run_table,
    load_paper,
    network_label,
)
from icsa.tables.inference import DifferenceInterval, difference_interval, mean_interval
from icsa.tables.stats import MeanStd, format_mean_std, hits_at, mean_std

__all__ = [
    "DifferenceInterval",
    "MeanStd",
    "Statistics",
    "build_efficiency_table",
    "build_run_table",
    "difference_interval",
    "format_mean_std",
    "hits_at",
    "load_paper",
    "mean_interval",
    "mean_std",
    "network_label",
]
