"""One training run, start, resume or restart: what ``icsa train --spec`` calls.

The run folder records the fingerprint of the run that made its state (``state/run.json``:
the :class:`icsa.spec.RunSpec` without the resumable recipe keys, plus content digests of the
centroids and the train/val dbStructs). If the folder holds ``state/checkpoint_last.pt`` and the
fingerprint is the same, the run continues from there: the same command after an interruption
finishes the job, more ``epochs`` (or ``patience``) continue a finished run, a moved checkout is
the same run. Any other difference restarts the run from scratch (``on_mismatch="restart"``, the
workflow's choice) or is an error naming the differences (``"error"``). Nothing outside the
package decides this (the workflow's rule only calls ``icsa train``).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import torch

from icsa.data import PlaceSplit, load_split
from icsa.errors import InputError
from icsa.fast_inference import channels_last, training_autocast, use_bf16
from icsa.io import file_digest, read_json, write_json
from icsa.models import build_model
from icsa.registry import needs_centroids
from icsa.spec import RunSpec, check_config, fingerprint_differences
from icsa.train.history import RunLogger
from icsa.train.job import RunContext, RunInputs, RunOptions
from icsa.train.kmeans import load_centroids
from icsa.train.lock import run_folder_lock
from icsa.train.loop import TripletTrainer
from icsa.train.mining import HardNegativeMiner, build_geometry, require_trainable
from icsa.train.multisimilarity import prepare_multisimilarity
from icsa.train.state import (
    CHECKPOINT_BEST_STATE,
    CHECKPOINT_LAST,
    RUN_FINGERPRINT,
    STATE_DIR,
    RunState,
    build_sources,
    clear_state,
)
from icsa.train.verified import CorruptStateError, load_verified
from icsa.utils import resolve_device, seed_everything, set_threads

log = logging.getLogger(__name__)


def require_regime_data(train: PlaceSplit, regime: str) -> None:
    """Triplets need queries with UTM positions; a split of labelled places without queries
    (GSV-Cities) trains only the multisimilarity regime: else an InputError saying so. (Any
    other split without trainable queries is refused by mining's require_trainable.)"""
    if regime == "triplet" and train.place_labels is not None:
        raise InputError(
            f"{train.source} ({train.name}): no queries, so no triplets; expected "
            "train.regime: multisimilarity for a dataset of labelled places (the gsvcities "
            "layout), or a training split with queries"
        )


def prepare_trainer(
    model: torch.nn.Module,
    train: PlaceSplit,
    val: PlaceSplit,
    spec: RunSpec,
    context: RunContext,
    checkpoint: dict[str, Any] | None = None,
) -> TripletTrainer:
    """Compose a trainer for the run ``spec`` (``model`` built from ``spec.model``; the
    multisimilarity regime: icsa.train.multisimilarity.prepare_multisimilarity): mining
    geometry and miner, input sources (this reads the images into the prefix cache), a fresh or
    restored state, and a logger that replays the history."""
    if spec.recipe.regime == "multisimilarity":
        return prepare_multisimilarity(model, train, val, spec, context, checkpoint)
    s, device, run_dir = spec.recipe, context.device, context.run_dir
    model = channels_last(model.to(device), device.type == "cuda")
    geometry = build_geometry(
        train.db.db_utm, train.db.q_utm, s.pos_radius, s.neg_radius,
        train.db.db_timestamps, train.db.q_timestamps,
    )  # fmt: skip
    require_trainable(geometry, f"{train.source} ({train.name})", s.pos_radius, s.neg_radius)
    log.info(
        "%s: %d trainable queries; %d skipped without a positive within %g m", train.name,
        len(geometry.trainable_queries), geometry.queries_without_positive, s.pos_radius,
    )  # fmt: skip
    miner = HardNegativeMiner(geometry, s.margin, s.neg_samples, s.neg_kept)
    # train.fast_inference resolved once for the run: prefix cache, mining refresh, validation.
    fast = use_bf16(s.fast_inference, device, "train.fast_inference")
    sources = build_sources(model, train, val, s, run_dir, device, fast)
    state = RunState.start(model, s, miner.neg_cache, training_autocast(device, s.amp))
    if checkpoint is not None:
        state.restore(checkpoint)
    logger = RunLogger(run_dir, state.history, context.enable_dvclive)
    return TripletTrainer(state, sources, miner, val, spec, context, logger, fast=fast)


def _recorded_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    """The fingerprint the state was made with; None (after a warning) when it is unreadable."""
    recorded = run_dir / RUN_FINGERPRINT
    try:
        value = read_json(recorded)
    except (OSError, ValueError) as err:
        value, reason = None, str(err).splitlines()[0]
    else:
        reason = f"a JSON {type(value).__name__}, expected an object"
    if isinstance(value, dict):
        return value
    log.warning("%s: unreadable (%s); discarding the run's state and starting again",
                recorded, reason)  # fmt: skip
    return None


def _reconcile_state(run_dir: Path, fingerprint: dict[str, Any], on_mismatch: str) -> bool:
    """Keep the run folder's state if it was made by this run; True when it may be resumed."""
    candidates = [run_dir / CHECKPOINT_LAST, run_dir / CHECKPOINT_BEST_STATE]
    if not any(path.is_file() for path in candidates):
        return False
    recorded = run_dir / RUN_FINGERPRINT
    if recorded.is_file():
        made_by = _recorded_fingerprint(run_dir)
        if made_by is None:
            clear_state(run_dir)
            return False
        diffs = fingerprint_differences(made_by, fingerprint)
    else:
        diffs = [f"{recorded} is missing (state of an older version or another tool)"]
    if not diffs:
        return True
    message = f"{run_dir}: its state was made by another run ({'; '.join(diffs)})"
    if on_mismatch == "error":
        raise InputError(f"{message}; delete {run_dir / STATE_DIR} or use on_mismatch=restart")
    log.warning("%s: restarting from scratch", message)
    clear_state(run_dir)
    return False


def _load_resumable(run_dir: Path, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint to resume from: ``checkpoint_last.pt`` if it verifies, else the best
    epoch's (the run then retrains the epochs after it), else None (the state is discarded and
    the run starts again). Each discarded file is one warning line; never an error."""
    last, best = run_dir / CHECKPOINT_LAST, run_dir / CHECKPOINT_BEST_STATE
    if last.is_file():
        try:
            return load_verified(last, map_location=device)
        except CorruptStateError as err:
            log.warning("%s; discarding it", str(err).splitlines()[0])
    if best.is_file():
        try:
            checkpoint = load_verified(best, map_location=device)
        except CorruptStateError as err:
            log.warning("%s; discarding it", str(err).splitlines()[0])
        else:
            log.warning(
                "resuming %s from its best epoch's state (%s, epoch %d); the epochs after it "
                "are trained again", run_dir, best, int(checkpoint["epoch"]),
            )  # fmt: skip
            # A copy: the optimiser's load_state_dict keeps the loaded momentum tensors, which
            # then train on; the best epoch's checkpoint must stay as it was saved.
            return {**checkpoint, "best_checkpoint": copy.deepcopy(checkpoint)}
    log.warning("%s: no usable resumable state; starting the run again", run_dir)
    clear_state(run_dir)
    return None


def train_run(
    spec: RunSpec,
    inputs: RunInputs,
    run_dir: str | os.PathLike,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Train (resume, or restart) the run ``spec`` on ``inputs`` in ``run_dir``; returns a
    summary with the best validation Recall@5. ``spec.model.init_seed`` must be the one
    ``icsa kmeans`` used for ``inputs.centroids`` (NetVLAD's initialisation; GeM runs have
    none); ``spec.seed`` drives the mining order. The run folder is locked while it trains:
    another process on it is an InputError naming that process, or with ``options.wait`` is
    waited for."""
    opts = options if options is not None else RunOptions()
    centroids = inputs.centroids
    set_threads(opts.threads)
    seed_everything(spec.seed)
    dev = resolve_device(opts.device)
    train = load_split(inputs.root, spec.dataset, "train", inputs.layout)
    v = inputs.validation
    if v is None:
        val = load_split(inputs.root, spec.dataset, "val", inputs.layout)
    else:
        val = load_split(v.root, v.dataset, v.split, v.layout)
    require_regime_data(train, spec.recipe.regime)
    m = spec.model
    model = build_model(**m.build_args())
    digests = {"train": train.digest(), "val": val.digest()}
    if v is not None:  # which split validates is part of the run (absent: fingerprints as before)
        digests["validation"] = val.name
    if needs_centroids(m.aggregation) != (centroids is not None):
        expected = "k-means centroids" if needs_centroids(m.aggregation) else "none"
        raise InputError(
            f"centroids = {centroids!r} for aggregation {m.aggregation!r}: expected {expected} "
            "(icsa.registry.AggregatorSpec.needs_centroids)"
        )
    if centroids is not None:
        made_with = {"weights": m.weights, "init_seed": m.init_seed,
                     "image_size": list(m.image_size)}  # fmt: skip
        cents, descs = load_centroids(
            centroids, m.num_clusters, model.feature_shape[0], m.backbone, m.attention, made_with
        )
        model.pool.init_from_centroids(cents, descs)
        digests["centroids"] = file_digest(centroids)
    run_dir = Path(run_dir)
    fingerprint = spec.fingerprint(digests)
    with run_folder_lock(run_dir, opts.wait):
        checkpoint = None
        if _reconcile_state(run_dir, fingerprint, opts.on_mismatch):
            checkpoint = _load_resumable(run_dir, dev)
        if checkpoint is not None:
            check_config(checkpoint["model_config"], model.config, f"checkpoint in {run_dir}")
            log.info("resuming %s from epoch %d", run_dir, int(checkpoint["epoch"]))
        write_json(run_dir / RUN_FINGERPRINT, fingerprint)
        context = RunContext(run_dir, dev, opts.enable_dvclive)
        trainer = prepare_trainer(model, train, val, spec, context, checkpoint)
        final = trainer.fit()
    state = trainer.state
    return {
        "run": spec.id,
        "run_dir": str(run_dir),
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "best_recall@5": state.best_recall,
        "stopped_early": state.stopped,
        "resumed": checkpoint is not None,
        "last": final,
    }
