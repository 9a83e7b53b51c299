"""Per-epoch training history: ``history.csv``/``history.json`` and dvclive, in the run folder.

The checkpoint's ``history`` (a list of plain dicts, one per epoch) is the source of truth. The
files are rewritten from it after every epoch, and dvclive is replayed from it when a run
resumes, so an interrupted run never leaves duplicated or missing epochs behind.

dvclive writes only into ``RUN/dvclive``: ``dvcyaml=None`` keeps it away from the repository's
``dvc.yaml`` and ``save_dvc_exp=False`` stops it from creating a DVC experiment per job. Its
repository lookup is switched off as well: dvclive 3.x otherwise runs ``dvc init`` at the root of
any Git repository that has no ``.dvc`` yet, a surprising side effect for a logger.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

from icsa.io import atomic_path, write_json

log = logging.getLogger(__name__)

# Column order of history.csv; rows may lack some (epoch 0 has no training statistics).
COLUMNS = (
    "epoch",
    "lr",
    "loss",
    "steps",
    "triplets",
    "queries_used",
    "queries_skipped_no_violation",
    "queries_without_positive",
    "recall@1",
    "recall@5",
    "recall@10",
    "recall@20",
    "train_s",
    "cache_refresh_s",
    "val_s",
    "best_epoch",
    "stopped_early",
)
# Bookkeeping columns: in the files, not logged to dvclive as metrics.
NOT_METRICS = ("best_epoch", "stopped_early")


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """history.json (list of rows) and history.csv (one line per epoch), atomically."""
    write_json(run_dir / "history.json", history)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
    with atomic_path(run_dir / "history.csv") as tmp:
        tmp.write_text(buffer.getvalue())


def _metrics_only_live() -> type:
    """dvclive's Live without its DVC-repository integration (we want its files, nothing else)."""
    from dvclive import Live  # deferred: dvclive imports dvc (slow)

    class MetricsOnlyLive(Live):
        def _init_dvc(self) -> None:
            # Never open or create a DVC repository; only record the (unused) dvc.yaml name.
            self._dvc_file = self._init_dvc_file()

    return MetricsOnlyLive


class RunLogger:
    """dvclive metrics (one step per epoch) plus the history files."""

    def __init__(self, run_dir: Path, history: list[dict[str, Any]], enable_dvclive: bool = True):
        self.run_dir = run_dir
        self.live = None
        if enable_dvclive:
            # resume=False lets dvclive clear its own folder; the past epochs are replayed below.
            self.live = _metrics_only_live()(
                dir=str(run_dir / "dvclive"), save_dvc_exp=False, dvcyaml=None, resume=False
            )
            for row in history:
                self._log_live(row)

    def _log_live(self, row: dict[str, Any]) -> None:
        if self.live is None:
            return
        self.live.step = int(row["epoch"])
        for key in COLUMNS[1:]:
            value = row.get(key)
            if key in NOT_METRICS:
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if number and math.isfinite(value):
                prefix = "val" if key.startswith("recall") else "train"
                self.live.log_metric(f"{prefix}/{key}", value)
        self.live.next_step()

    def log_epoch(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        recalls = ", ".join(f"{k}={row[k]:.4f}" for k in COLUMNS if k.startswith("recall@"))
        loss = row.get("loss")
        log.info(
            "epoch %s: loss=%s %s", row["epoch"], "-" if loss is None else f"{loss:.4f}", recalls
        )
        write_history(self.run_dir, history)
        self._log_live(row)

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
