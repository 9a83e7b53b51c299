"""Everything a training run carries between epochs, and its checkpoint round trip.

:class:`TrainState` sets up the pieces the loop uses (input sources with the frozen-prefix
cache, mining geometry and negative cache, SGD + StepLR, the logger) and turns them into a
checkpoint dict of plain data and back. Resuming restores model, optimiser, scheduler, RNG
states, the per-query hard-negative cache and the early-stopping counters; together with the
per-epoch seeded Generators this makes an interrupted run end bit-identical on CPU.

The resumable state (``checkpoint_last.pt``) also carries the best epoch's checkpoint. Snakemake
deletes a job's declared outputs (``checkpoint_best.pt`` among them) before it reruns the job,
and a resumed run past its best epoch may never improve again; so :meth:`write_best_checkpoint`
rewrites the best file from the resumable state whenever it is missing, and a rerun after any
interruption ends with the true best epoch's checkpoint. The price: ``checkpoint_last.pt``
holds two models' states.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icsa.data import ImageDataset, PlaceSplit
from icsa.errors import InputError
from icsa.train.checkpoint import get_rng_state, save_checkpoint, set_rng_state
from icsa.train.history import RunLogger
from icsa.train.mining import HardNegativeMiner, build_geometry
from icsa.train.prefix_cache import (
    InputSource,
    open_or_build_prefix_cache,
    plan_prefix_cache,
    prefix_shape,
)
from icsa.train.settings import TrainSettings

log = logging.getLogger(__name__)

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"


class TrainState:
    def __init__(
        self,
        model: torch.nn.Module,
        train: PlaceSplit,
        val: PlaceSplit,
        settings: TrainSettings,
        run_dir: str | Path,
        seed: int,
        device: torch.device,
        enable_dvclive: bool = True,
    ) -> None:
        self.model = model.to(device)
        self.train, self.val, self.settings = train, val, settings
        self.run_dir = Path(run_dir)
        self.seed, self.device = int(seed), device
        self.amp = bool(settings.amp and device.type == "cuda")
        self.image_size = tuple(model.config["image_size"])
        k, c = model.netvlad.num_clusters, model.netvlad.dim
        self.descriptor_dim = k * c
        s = settings
        self.geometry = build_geometry(
            train.db.db_utm,
            train.db.q_utm,
            s.pos_radius,
            s.neg_radius,
            train.db.db_timestamps,
            train.db.q_timestamps,
        )
        log.info(
            "%s: %d trainable queries; %d skipped without a positive within %g m",
            train.name,
            len(self.geometry.trainable_queries),
            self.geometry.queries_without_positive,
            s.pos_radius,
        )
        self.miner = HardNegativeMiner(self.geometry, s.margin, s.neg_samples, s.neg_kept)
        self.sources = self._input_sources()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, s.lr_step, s.lr_gamma)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_recall = -1.0
        self.best_epoch = -1
        self.best_checkpoint: dict[str, Any] | None = None  # the best epoch's checkpoint
        self.initial_weight_norm = self.weight_norm()  # the divergence check's reference
        self.epochs_without_improvement = 0
        self.stopped = False
        self.enable_dvclive = enable_dvclive
        self._logger: RunLogger | None = None

    @property
    def logger(self) -> RunLogger:
        # Created lazily so that a restored history is replayed into dvclive.
        if self._logger is None:
            self._logger = RunLogger(self.run_dir, self.history, self.enable_dvclive)
        return self._logger

    def _input_sources(self) -> dict[str, InputSource]:
        s = self.settings
        datasets = {
            f"{role}-{part}": ImageDataset(paths, self.image_size, name=f"{split.name}-{part}")
            for role, split in (("train", self.train), ("val", self.val))
            for part, paths in (("db", split.db_paths), ("q", split.q_paths))
        }
        if not s.prefix_cache:
            return {name: InputSource(ds) for name, ds in datasets.items()}
        per_image = int(np.prod(prefix_shape(self.model, self.image_size)))
        per_image *= np.dtype(s.prefix_cache_dtype).itemsize
        # Query and database inputs of one split go into one forward pass, so they are cached
        # together or not at all; training comes first (it is read every step).
        sizes = {
            "train": len(datasets["train-db"]) + len(datasets["train-q"]),
            "val": len(datasets["val-db"]) + len(datasets["val-q"]),
        }
        plan = plan_prefix_cache(sizes, per_image, s.prefix_cache_budget_mb)
        sources = {}
        for name, ds in datasets.items():
            if not plan[name.split("-")[0]]:
                log.info(
                    "prefix cache for %s skipped: over the %g MB budget",
                    name,
                    s.prefix_cache_budget_mb,
                )
                sources[name] = InputSource(ds)
                continue
            path = self.run_dir / "prefix_cache" / f"{name}.npy"
            prefix = open_or_build_prefix_cache(
                self.model,
                ds,
                path,
                s.prefix_cache_dtype,
                s.eval_batch_size,
                s.num_workers,
                self.device,
            )
            sources[name] = InputSource(ds, prefix)
        return sources

    def checkpoint(self) -> dict[str, Any]:
        """Plain-data checkpoint of the current state (loads with weights_only=True)."""
        return {
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_config": dict(self.model.config),
            "train_settings": self.settings.to_dict(),
            "seed": self.seed,
            "dataset": self.train.dataset,
            "epoch": self.epoch,
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "scaler_state": self.scaler.state_dict(),
            "rng_state": get_rng_state(),
            "best_recall": self.best_recall,
            "initial_weight_norm": self.initial_weight_norm,
            "best_epoch": self.best_epoch,
            "history": list(self.history),
            "mining_state": {"neg_cache": torch.from_numpy(self.miner.neg_cache.copy())},
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
        self.miner.neg_cache[...] = checkpoint["mining_state"]["neg_cache"].numpy()
        self.epochs_without_improvement = int(
            checkpoint["early_stop"]["epochs_without_improvement"]
        )
        self.stopped = bool(checkpoint["early_stop"]["stopped"])

    def end_epoch(self, row: dict[str, Any]) -> None:
        """Record an epoch: early-stopping counters, checkpoints (last, and best), logs.

        Only trained epochs (>= 1) can become the best checkpoint, as in the public code: epoch
        0 (the untrained model, ``validate_untrained``) is logged for the curves, never selected,
        so a module that never beats its initialisation cannot report the initial model's
        numbers (for ``icsa``/``ch``/``ia`` those equal the ``none`` baseline's bit for bit).
        Each row records the best epoch so far and whether training stopped early, so the last
        row of the history says which epoch the tables' numbers come from.
        """
        self.epoch = int(row["epoch"])
        trained = self.epoch > 0
        improved = trained and row["recall@5"] > self.best_recall
        if improved:
            self.best_recall, self.best_epoch = float(row["recall@5"]), self.epoch
            self.epochs_without_improvement = 0
        elif trained:
            self.epochs_without_improvement += 1
            patience = self.settings.patience
            if patience > 0 and self.epochs_without_improvement >= patience:
                log.info(
                    "early stop after epoch %d: val Recall@5 not better than %.4f "
                    "(epoch %d) for %d epochs",
                    self.epoch,
                    self.best_recall,
                    self.best_epoch,
                    patience,
                )
                self.stopped = True
        row["best_epoch"] = self.best_epoch if self.best_epoch > 0 else None
        row["stopped_early"] = self.stopped
        self.history.append(row)
        checkpoint = self.checkpoint()
        if improved:
            # A copy: the state dicts share storage with the model and optimiser, which train on.
            self.best_checkpoint = copy.deepcopy(checkpoint)
            save_checkpoint(self.run_dir / CHECKPOINT_BEST, checkpoint)
        # checkpoint_last goes last: once it names an epoch, everything of that epoch is on disk,
        # the best epoch's checkpoint included.
        save_checkpoint(
            self.run_dir / CHECKPOINT_LAST, {**checkpoint, "best_checkpoint": self.best_checkpoint}
        )
        self.logger.log_epoch(row, self.history)

    def weight_norm(self) -> float:
        """L2 norm of all trainable weights (what the divergence check watches)."""
        squares = [
            p.detach().double().pow(2).sum() for p in self.model.parameters() if p.requires_grad
        ]
        return float(torch.stack(squares).sum().sqrt()) if squares else 0.0

    def write_best_checkpoint(self) -> None:
        """Write ``checkpoint_best.pt`` from the resumable state if it is missing (deleted by a
        rerun, or lost in an interruption between the two saves of an epoch)."""
        path = self.run_dir / CHECKPOINT_BEST
        if path.is_file() or self.best_epoch < 1:
            return
        if self.best_checkpoint is None:
            raise InputError(
                f"{path} is missing and {self.run_dir / CHECKPOINT_LAST} does not carry the best "
                f"epoch ({self.best_epoch}): it was written by an older icsa; delete the run "
                "folder to retrain the run"
            )
        log.info("rewriting %s (epoch %d) from the resumable state", path, self.best_epoch)
        save_checkpoint(path, self.best_checkpoint)
