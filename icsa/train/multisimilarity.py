"""The multisimilarity training regime (``train.regime: multisimilarity``), docs/science.md.

Place-grouped batches as GSV-Cities (amaralibey/gsv-cities: ``GSVCitiesDataset`` yields P places
× K images, ``VPRModel.training_step`` flattens them with the place ids as labels), online
Multi-Similarity mining and loss (Wang et al., CVPR 2019) with gsv-cities' settings
(``utils/losses.py``: ``MultiSimilarityMiner(epsilon=0.1, CosineSimilarity())``,
``MultiSimilarityLoss(alpha=1, beta=50, base=0, DotProductSimilarity())``), AdamW with linear
warm-up and linear decay (icsa.train.schedule), RandAugment on the training images as
gsv-cities' ``train_transform`` (``T.RandAugment(num_ops=2)``).

The loss and miner are pytorch-metric-learning's, not our own: they are what every current VPR
codebase (gsv-cities, MixVPR, BoQ, SALAD) trains with, so a result here is comparable with
theirs only if the same implementation (its pair weighting, thresholds and reductions) is used.

Everything random in an epoch comes from Generators seeded by (seed, epoch[, step]): the place
order and image choice from one numpy Generator per epoch, each step's augmentation from a
torch seed of (seed, epoch, step) under ``fork_rng``; so a resumed run is bit-identical on CPU
(checkpoints hold the optimiser, the schedule's step count and the epoch).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torchvision import transforms as T
from tqdm import tqdm

from icsa.data import PlaceSplit
from icsa.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from icsa.fast_inference import channels_last, training_autocast, use_bf16
from icsa.spec import RunSpec
from icsa.train.history import RunLogger
from icsa.train.job import RunContext
from icsa.train.loop import NonFiniteLossError, TripletTrainer
from icsa.train.places import (
    Places,
    place_batches,
    places_from_labels,
    places_from_utm,
    require_places,
)
from icsa.train.settings import TrainSettings
from icsa.train.state import RunState, Sources, build_sources

log = logging.getLogger(__name__)

RANDAUGMENT_OPS = 2  # gsv-cities' train transform


def ms_loss_and_miner(settings: TrainSettings) -> tuple[Any, Any]:
    """pytorch-metric-learning's MultiSimilarityLoss and MultiSimilarityMiner with the run's
    settings and gsv-cities' similarities (the descriptors are L2-normalised, so the loss's
    dot product is their cosine)."""
    from pytorch_metric_learning import losses, miners
    from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity

    s = settings
    loss = losses.MultiSimilarityLoss(
        alpha=s.ms_alpha, beta=s.ms_beta, base=s.ms_base, distance=DotProductSimilarity()
    )
    miner = miners.MultiSimilarityMiner(epsilon=s.ms_epsilon, distance=CosineSimilarity())
    return loss, miner


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The torch seed of one step's augmentation (independent of what ran before it)."""
    return int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0])


def augment(images: torch.Tensor, seed: int) -> torch.Tensor:
    """RandAugment (num_ops=2, bilinear) of each ImageNet-normalised image [N, 3, H, W],
    drawn from torch seed ``seed`` without touching the global RNG; returns normalised images."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = ((images * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    transform = T.RandAugment(num_ops=RANDAUGMENT_OPS, interpolation=T.InterpolationMode.BILINEAR)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([transform(img) for img in pixels])
    return (out.float() / 255 - mean) / std


class MultiSimilarityTrainer(TripletTrainer):
    """Epochs of place-grouped Multi-Similarity training; validation, checkpoints, early stopping
    and logs are the triplet trainer's (the best validation Recall@5 selects the epoch)."""

    def __init__(
        self,
        state: RunState,
        sources: Sources,
        places: Places,
        val: PlaceSplit,
        spec: RunSpec,
        context: RunContext,
        logger: RunLogger,
        fast: bool = False,
    ) -> None:
        super().__init__(state, sources, None, val, spec, context, logger, fast=fast)
        self.places = places
        self.loss_fn, self.pair_miner = ms_loss_and_miner(spec.recipe)

    def _inputs(self, images: np.ndarray, epoch: int, step: int) -> tuple[torch.Tensor, bool]:
        """A batch's model inputs (database images, then queries) and whether they are cached
        prefixes; augmented when the regime says so."""
        db_src, q_src = self.sources.train_db, self.sources.train_q
        num_db = self.places.num_db
        parts = [src.get(idx) for src, idx in ((db_src, images[images < num_db]),
                 (q_src, images[images >= num_db] - num_db)) if len(idx)]  # fmt: skip
        inputs = torch.cat(parts)
        if self.settings.ms_augment != "none" and not db_src.cached:
            inputs = augment(inputs, step_seed(self.seed, epoch, step))
        return inputs, db_src.cached

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch (1-based) over all places; returns its statistics."""
        s = self.settings
        rng = np.random.default_rng([self.seed, epoch])
        batches = place_batches(self.places, s.ms_places_per_batch, s.ms_images_per_place, rng)
        stats = {"loss_sum": 0.0, "steps": 0, "pairs": 0, "images": 0, "train_s": 0.0,
                 "cache_refresh_s": 0.0}  # fmt: skip
        t0 = time.perf_counter()
        for step, (images, place_ids) in enumerate(
            tqdm(batches, desc=f"epoch {epoch}", mininterval=5, leave=False), start=1
        ):
            num_db = self.places.num_db
            flat = images.reshape(-1)
            # Labels in the order _inputs puts the images: database images first.
            labels = np.repeat(place_ids, images.shape[1])
            labels = np.concatenate([labels[flat < num_db], labels[flat >= num_db]])
            inputs, cached = self._inputs(flat, epoch, step)
            self.state.model.train()
            self.state.optimizer.zero_grad(set_to_none=True)
            desc, backward = self._step_descriptors(inputs, cached)
            target = torch.from_numpy(labels).to(desc.device)
            pairs = self.pair_miner(desc, target)
            loss = self.loss_fn(desc, target, pairs)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"epoch {epoch}, step {step}: loss is {loss.item()}; the model diverged "
                    "(lower train.ms_lr?) or an input is bad"
                )
            self.state.scaler.scale(loss).backward()
            if backward is not None:  # the gradient cache's second pass (step_chunk)
                backward()
            self.state.scaler.step(self.state.optimizer)
            self.state.scaler.update()
            self.state.scheduler.step()  # the lr schedule counts optimiser steps
            stats["loss_sum"] += float(loss.detach())
            stats["steps"] += 1
            stats["pairs"] += int(len(pairs[0]) + len(pairs[2]))
            stats["images"] += len(flat)
        stats["train_s"] = time.perf_counter() - t0
        return stats

    def _untrained_row(self) -> dict[str, Any]:
        return {"places": len(self.places), "cells_too_small": self.places.dropped}

    def _stats_row(self, stats: dict[str, float]) -> dict[str, Any]:
        steps = stats["steps"]
        return {
            "loss": stats["loss_sum"] / steps if steps else None,
            "steps": steps,
            "pairs_mined": stats["pairs"],
            "images": stats["images"],
            "places": len(self.places),
        }

    def _end_epoch_schedule(self) -> None:
        """Nothing: the schedule steps with the optimiser (train_epoch)."""


def prepare_multisimilarity(
    model: torch.nn.Module,
    train: PlaceSplit,
    val: PlaceSplit,
    spec: RunSpec,
    context: RunContext,
    checkpoint: dict[str, Any] | None = None,
) -> MultiSimilarityTrainer:
    """Compose a multisimilarity trainer (icsa.train.run.prepare_trainer's counterpart): the
    training split's places, input sources (the training images uncached when augmented), a
    fresh or restored state, a logger replaying the history."""
    s, device, run_dir = spec.recipe, context.device, context.run_dir
    model = channels_last(model.to(device), device.type == "cuda")
    source = f"{train.source} ({train.name})"
    if train.place_labels is not None:  # the dataset's own places (GSV-Cities)
        places = places_from_labels(train.place_labels, s.ms_images_per_place)
        require_places(places, source, None, s.ms_images_per_place)
        log.info("%s: %d labelled places of >= %d images; %d with fewer", train.name,
                 len(places), s.ms_images_per_place, places.dropped)  # fmt: skip
    else:
        places = places_from_utm(train.db.db_utm, train.db.q_utm, s.ms_place_cell_m,
                                 s.ms_images_per_place)  # fmt: skip
        require_places(places, source, s.ms_place_cell_m, s.ms_images_per_place)
        log.info("%s: %d places of >= %d images in %g m cells; %d cells with fewer", train.name,
                 len(places), s.ms_images_per_place, s.ms_place_cell_m, places.dropped)  # fmt: skip
    fast = use_bf16(s.fast_inference, device, "train.fast_inference")
    sources = build_sources(model, train, val, s, run_dir, device, fast,
                            cache_train=s.ms_augment == "none")  # fmt: skip
    no_mining = np.zeros((0, 1), np.int64)  # no per-query negative cache in this regime
    state = RunState.start(model, s, no_mining, training_autocast(device, s.amp))
    if checkpoint is not None:
        state.restore(checkpoint)
    logger = RunLogger(run_dir, state.history, context.enable_dvclive)
    return MultiSimilarityTrainer(state, sources, places, val, spec, context, logger, fast=fast)
