"""One training run, start or resume: what ``icsa train`` calls.

A run folder is named by the Snakemake wildcards
``{dataset}-{backbone}-{attention}-b{block}-s{seed}`` (docs/architecture.md, "Run naming"). If
it already holds ``checkpoint_last.pt`` the run continues from there: the same command after an
interruption finishes the job, and re-running a finished run only rewrites its history files.
A checkpoint made with another model or recipe is an error rather than silently continued.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from icsa.data import load_split
from icsa.errors import InputError
from icsa.models import build_model
from icsa.train.checkpoint import check_config, load_checkpoint
from icsa.train.kmeans import load_centroids
from icsa.train.loop import TripletTrainer
from icsa.train.settings import TrainSettings
from icsa.train.state import CHECKPOINT_LAST
from icsa.utils import resolve_device, seed_everything, set_threads

log = logging.getLogger(__name__)

# Recipe keys that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("epochs", "patience", "num_workers", "eval_batch_size")


def run_name(dataset: str, backbone: str, attention: str, block: str | int, seed: int) -> str:
    """``pitts30k-vgg16-icsa-b5-s0``; block ``none`` gives ``bnone``."""
    return f"{dataset}-{backbone}-{attention}-b{block}-s{seed}"


def _check_resumable(checkpoint: dict, trainer: TripletTrainer, path: Path) -> None:
    check_config(checkpoint["model_config"], trainer.model.config, f"checkpoint {path}")
    old = {k: v for k, v in checkpoint["train_settings"].items() if k not in RESUMABLE_CHANGES}
    new = {k: v for k, v in trainer.settings.to_dict().items() if k not in RESUMABLE_CHANGES}
    diffs = [
        f"{k}: checkpoint {old.get(k)!r}, now {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if checkpoint.get("seed") != trainer.seed:
        diffs.append(f"seed: checkpoint {checkpoint.get('seed')!r}, now {trainer.seed!r}")
    if diffs:
        raise InputError(
            f"checkpoint {path}: made with other train settings ({'; '.join(diffs)}); delete the "
            "run folder or use another --run-dir"
        )


def train_run(
    root: str | os.PathLike,
    dataset: str,
    backbone: str,
    attention: str,
    lowest_trained_block: str | int,
    seed: int,
    weights: str,
    image_size: tuple[int, int],
    num_clusters: int,
    centroids: str | os.PathLike,
    settings: TrainSettings,
    run_dir: str | os.PathLike,
    device: str = "auto",
    threads: int | None = None,
    init_seed: int | None = None,
    enable_dvclive: bool = True,
) -> dict[str, Any]:
    """Train (or resume) one model; returns a summary with the best validation Recall@5.

    ``init_seed`` (default ``seed``) seeds the random backbone/attention init and must be the
    one ``icsa kmeans`` used; ``seed`` drives the mining order.
    """
    set_threads(threads)
    seed_everything(seed)
    dev = resolve_device(device)
    train = load_split(root, dataset, "train")
    val = load_split(root, dataset, "val")
    model = build_model(
        backbone,
        attention,
        num_clusters,
        image_size,
        lowest_trained_block,
        weights,
        seed if init_seed is None else init_seed,
    )
    made_with = {
        "weights": weights,
        "init_seed": seed if init_seed is None else init_seed,
        "image_size": list(image_size),
    }
    cents, descs = load_centroids(
        centroids, num_clusters, model.feature_shape[0], backbone, attention, made_with
    )
    model.netvlad.init_from_centroids(cents, descs)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = TripletTrainer(model, train, val, settings, run_dir, seed, dev, enable_dvclive)
    last = run_dir / CHECKPOINT_LAST
    if last.is_file():
        checkpoint = load_checkpoint(last, map_location=dev)
        _check_resumable(checkpoint, trainer, last)
        trainer.restore(checkpoint)
        log.info("resuming %s from epoch %d", run_dir, trainer.epoch)
    final = trainer.fit()
    return {
        "run_dir": str(run_dir),
        "epochs": trainer.epoch,
        "best_epoch": trainer.best_epoch,
        "best_recall@5": trainer.best_recall,
        "stopped_early": trainer.stopped,
        "last": final,
    }
