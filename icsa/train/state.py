"""What a training run carries between epochs (:class:`RunState`), and what it reads from.

:class:`RunState` is a plain record (model, optimiser, scheduler, grad scaler, the per-query
hard-negative cache, epoch, history, the best epoch so far, early-stopping counters) with its
checkpoint round trip: resuming restores all of it and the RNG states; together with the
per-epoch seeded Generators this makes an interrupted run end bit-identical on CPU.
:class:`Sources` holds the four input lists (training/validation database and queries), each
from the frozen-prefix cache or from decoding images; :func:`build_sources` is the one step
that reads images (it builds the caches).

The resumable state (``state/checkpoint_last.pt``) also carries the best epoch's checkpoint
(see :func:`write_best_checkpoint`); ``state/checkpoint_best.pt`` holds it on its own,
and each checkpoint has a digest record beside it (icsa.train.verified).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icsa.data import ImageDataset, PlaceSplit
from icsa.errors import InputError
from icsa.io import atomic_path
from icsa.train.checkpoint import get_rng_state, set_rng_state
from icsa.train.lock import LOCK_FILE
from icsa.train.prefix_cache import (
    InputSource,
    keep_prefix_on_gpu,
    open_or_build_prefix_cache,
    plan_prefix_cache,
    prefix_shape,
)
from icsa.train.schedule import WarmupLinear
from icsa.train.settings import TrainSettings
from icsa.train.verified import CorruptStateError, read_digest_record, save_verified, verify

log = logging.getLogger(__name__)

# The run folder: outputs at its top, the job's scratch (what a resumption needs) under state/
# (icsa.spec.run_state_dir says why it is not a Snakemake output).
STATE_DIR = "state"
CHECKPOINT_LAST = f"{STATE_DIR}/checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
# The best epoch's checkpoint as the state keeps it; CHECKPOINT_BEST is a hard link to it (a
# copy where links are not supported), so Snakemake deleting its output before a rerun loses
# nothing, and a damaged checkpoint_last.pt can resume from the best epoch instead.
CHECKPOINT_BEST_STATE = f"{STATE_DIR}/checkpoint_best.pt"
RUN_FINGERPRINT = f"{STATE_DIR}/run.json"


def publish_best(run_dir: Path) -> None:
    """Make ``CHECKPOINT_BEST`` the state's best checkpoint: a hard link to it (no second copy
    on disk), or a copy where the file system has no links; replaced atomically."""
    kept, published = Path(run_dir) / CHECKPOINT_BEST_STATE, Path(run_dir) / CHECKPOINT_BEST
    with atomic_path(published) as tmp:
        tmp.unlink()
        try:
            os.link(kept, tmp)
        except OSError:  # no hard links here (some network and FUSE file systems)
            shutil.copyfile(kept, tmp)


def clear_state(run_dir: Path) -> None:
    """Delete the run's resumable state, all but the lock its training process holds
    (icsa.train.lock: a deleted lock file would not exclude the next process)."""
    state = Path(run_dir) / STATE_DIR
    if not state.is_dir():
        return
    for entry in state.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@dataclass(frozen=True)
class Sources:
    """Model inputs of the four image lists a run reads."""

    train_db: InputSource
    train_q: InputSource
    val_db: InputSource
    val_q: InputSource


def build_sources(
    model: torch.nn.Module,
    train: PlaceSplit,
    val: PlaceSplit,
    settings: TrainSettings,
    run_dir: Path,
    device: torch.device,
    fast: bool = False,
    cache_train: bool = True,
) -> Sources:
    """Input sources, with the frozen prefix cached under ``run_dir/state/prefix_cache`` where
    the settings and the memory budget allow (built here, or reused when still valid; under
    bfloat16 autocast with ``fast``). ``cache_train=False``: the training images are decoded at
    every step (augmented training inputs cannot come from a cache)."""
    image_size = tuple(model.config["image_size"])
    datasets = {
        f"{role}_{part}": ImageDataset(paths, image_size, name=f"{split.name}-{part}")
        for role, split in (("train", train), ("val", val))
        for part, paths in (("db", split.db_paths), ("q", split.q_paths))
    }
    s = settings
    pin = device.type == "cuda"  # page-locked batches copy to the GPU asynchronously
    threads = s.num_workers  # a training step's images decoded by as many threads
    if not s.prefix_cache:
        return Sources(**{name: InputSource(ds, pin_memory=pin, decode_threads=threads)
                          for name, ds in datasets.items()})  # fmt: skip
    per_image = int(np.prod(prefix_shape(model, image_size)))
    per_image *= np.dtype(s.prefix_cache_dtype).itemsize
    # Query and database inputs of one split go into one forward pass, so they are cached
    # together or not at all; training comes first (it is read every step).
    roles = ("train", "val") if cache_train else ("val",)
    sizes = {role: len(datasets[f"{role}_db"]) + len(datasets[f"{role}_q"]) for role in roles}
    plan = plan_prefix_cache(sizes, per_image, s.prefix_cache_budget_mb)
    over = [role for role, cached in plan.items() if not cached]
    if over:  # said before anything is built (`icsa plan` says it before the run starts)
        needs = ", ".join(f"{role} {sizes[role] * per_image / 2**20:,.0f} MB" for role in over)
        log.warning(
            "prefix cache over train.prefix_cache_budget_mb = %g: %s; those inputs are "
            "recomputed from decoded images at every step and refresh (icsa plan estimates the "
            "cost); raise the budget where the disk holds it", s.prefix_cache_budget_mb, needs,
        )  # fmt: skip
    sources = {}
    for name, ds in datasets.items():
        if not plan.get(name.split("_")[0], False):
            sources[name] = InputSource(ds, pin_memory=pin, decode_threads=threads)
            continue
        # File names as before the record had attributes: train-db.npy, ...
        path = Path(run_dir) / STATE_DIR / "prefix_cache" / f"{name.replace('_', '-')}.npy"
        prefix = open_or_build_prefix_cache(
            model, ds, path, s.prefix_cache_dtype, s.eval_batch_size, s.num_workers, device,
            fast=fast,
        )  # fmt: skip
        sources[name] = InputSource(ds, prefix, pin_memory=pin)
    if device.type == "cuda":
        keep_prefix_on_gpu(list(sources.values()), device)
    return Sources(**sources)


@dataclass
class RunState:
    """Everything that changes while a run trains; ``to_checkpoint``/``restore`` round-trip it.

    ``neg_cache`` is the miner's per-query hard-negative cache (the same array, updated in
    place). ``best_checkpoint`` is the best epoch's checkpoint, carried by the resumable one.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    neg_cache: np.ndarray
    amp_dtype: str | None = None  # CUDA training autocast (fast_inference.training_autocast)
    initial_weight_norm: float = 0.0  # the divergence check's reference
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_recall: float = -1.0
    best_epoch: int = -1
    best_checkpoint: dict[str, Any] | None = None
    epochs_without_improvement: int = 0
    stopped: bool = False

    @classmethod
    def start(
        cls,
        model: torch.nn.Module,
        settings: TrainSettings,
        neg_cache: np.ndarray,
        amp_dtype: str | None = None,
    ) -> RunState:
        """A fresh run: SGD (the NetVLAD recipe) or Adam over the trainable parameters, with
        StepLR (the multisimilarity regime: AdamW with warm-up and linear decay);
        ``amp_dtype`` float16 brings a GradScaler, bfloat16 needs none."""
        s = settings
        params = [p for p in model.parameters() if p.requires_grad]
        if s.regime == "multisimilarity":  # AdamW, lr per optimiser step (icsa.train.schedule)
            optimizer = torch.optim.AdamW(params, lr=s.ms_lr, weight_decay=s.ms_weight_decay)
            schedule = WarmupLinear(s.ms_warmup_steps, s.ms_decay_steps, s.ms_end_factor)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        else:
            if s.optimizer == "adam":
                optimizer = torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
            else:
                optimizer = torch.optim.SGD(params, lr=s.lr, momentum=s.momentum,
                                            weight_decay=s.weight_decay)  # fmt: skip
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, s.lr_step, s.lr_gamma)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == "float16")
        state = cls(model, optimizer, scheduler, scaler, neg_cache, amp_dtype)
        state.initial_weight_norm = state.weight_norm()
        return state

    def weight_norm(self) -> float:
        """L2 norm of all trainable weights (what the divergence check watches)."""
        squares = [
            p.detach().double().pow(2).sum() for p in self.model.parameters() if p.requires_grad
        ]
        return float(torch.stack(squares).sum().sqrt()) if squares else 0.0

    def to_checkpoint(self, identity: dict[str, Any]) -> dict[str, Any]:
        """Plain-data checkpoint (loads with weights_only=True); ``identity`` says whose run it
        is (model config, train settings, seed, dataset)."""
        return {
            **identity,
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_config": dict(self.model.config),
            "epoch": self.epoch,
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "scaler_state": self.scaler.state_dict(),
            "rng_state": get_rng_state(),
            "best_recall": self.best_recall,
            "initial_weight_norm": self.initial_weight_norm,
            "best_epoch": self.best_epoch,
            "history": list(self.history),
            "mining_state": {"neg_cache": torch.from_numpy(self.neg_cache.copy())},
            "early_stop": {
                "epochs_without_improvement": self.epochs_without_improvement,
                "stopped": self.stopped,
            },
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from ``checkpoint`` (the caller has checked that it belongs to this run)."""
        self.model.load_state_dict(checkpoint["model_state"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        self.scheduler.load_state_dict(checkpoint["scheduler_state"])
        if checkpoint.get("scaler_state"):
            self.scaler.load_state_dict(checkpoint["scaler_state"])
        set_rng_state(checkpoint["rng_state"])
        self.epoch = int(checkpoint["epoch"])
        self.history = list(checkpoint["history"])
        self.best_recall = float(checkpoint["best_recall"])
        self.best_epoch = int(checkpoint.get("best_epoch", -1))
        self.best_checkpoint = checkpoint.get("best_checkpoint")
        self.initial_weight_norm = float(
            checkpoint.get("initial_weight_norm", self.initial_weight_norm)
        )
        self.neg_cache[...] = checkpoint["mining_state"]["neg_cache"].numpy()
        early = checkpoint["early_stop"]
        self.epochs_without_improvement = int(early["epochs_without_improvement"])
        self.stopped = bool(early["stopped"])


def write_best_checkpoint(run_dir: Path, state: RunState) -> None:
    """Make ``checkpoint_best.pt`` the best epoch's checkpoint of the resumable ``state``.

    Snakemake deletes a job's outputs (``checkpoint_best.pt`` among them) before it reruns
    the job, and a resumed run past its best epoch may never improve again; the state keeps
    the best epoch's checkpoint (``state/checkpoint_best.pt``, and a copy inside
    ``checkpoint_last.pt``), so a rerun after any interruption still ends with the true best
    epoch's checkpoint. A state copy that fails verification, or that a killed run left
    from a later epoch than the state's best, is rewritten from ``checkpoint_last.pt``."""
    if state.best_epoch < 1:
        return
    run_dir = Path(run_dir)
    kept = run_dir / CHECKPOINT_BEST_STATE
    try:
        record = read_digest_record(kept)
        intact = record is not None and record["epoch"] == state.best_epoch and verify(kept)
    except CorruptStateError as err:
        log.warning("%s; rewriting it from %s", err, CHECKPOINT_LAST)
        intact = False
    if not intact:
        if state.best_checkpoint is None:
            raise InputError(
                f"{run_dir / CHECKPOINT_BEST} is missing and {run_dir / CHECKPOINT_LAST} does "
                f"not carry the best epoch ({state.best_epoch}): it was written by an older "
                "icsa; delete the run folder to retrain the run"
            )
        save_verified(kept, state.best_checkpoint)
    published = run_dir / CHECKPOINT_BEST
    if not intact or not (published.is_file() and published.samefile(kept)):
        log.info("writing %s (epoch %d) from the resumable state", published, state.best_epoch)
        publish_best(run_dir)
