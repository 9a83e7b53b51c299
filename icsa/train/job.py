"""What a training process is given besides its :class:`icsa.spec.RunSpec`.

The RunSpec says what the run is: it alone decides the run id, the fingerprint (resume or
restart) and the identity written into every checkpoint (:func:`icsa.train.checkpoint.
run_identity`). The records here say where the run's inputs lie and how this process trains it;
none of them changes the trained weights (the inputs' *contents* enter the fingerprint as
digests, their paths do not), so a run moved to another folder, device or thread count is the
same run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from icsa.data.layouts import DEFAULT_LAYOUT
from icsa.errors import InputError

if TYPE_CHECKING:  # torch loads with the trainer, not with `icsa train --help`
    import torch

ON_MISMATCH = ("restart", "error")


@dataclass(frozen=True)
class SplitSource:
    """One split of a dataset on disk: the validation set when it is not the training
    dataset's own ``val`` (config ``validation``; GSV-Cities has none)."""

    root: str | os.PathLike
    dataset: str
    split: str
    layout: str = DEFAULT_LAYOUT


@dataclass(frozen=True)
class RunInputs:
    """Where the run's data are: the dataset root (in ``layout``), for NetVLAD the k-means
    centroids of ``icsa kmeans`` (GeM runs have none), and the validation split (None: the
    training dataset's ``val``)."""

    root: str | os.PathLike
    centroids: str | os.PathLike | None = None
    layout: str = DEFAULT_LAYOUT
    validation: SplitSource | None = None


@dataclass(frozen=True)
class RunOptions:
    """How ``icsa train`` runs the job: device (``auto``, ``cpu``, ``cuda[:N]``), CPU threads
    (None: leave torch's), dvclive logging, what to do with state made by another run
    (``restart`` or ``error``), and whether to wait for another process training the folder."""

    device: str = "auto"
    threads: int | None = None
    enable_dvclive: bool = True
    on_mismatch: str = "restart"
    wait: bool = False

    def __post_init__(self) -> None:
        if self.on_mismatch not in ON_MISMATCH:
            raise InputError(f"on_mismatch={self.on_mismatch!r}: expected one of {ON_MISMATCH}")


@dataclass(frozen=True)
class RunContext:
    """Where a composed trainer works: its run folder, the resolved device, dvclive or not."""

    run_dir: Path
    device: torch.device
    enable_dvclive: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
