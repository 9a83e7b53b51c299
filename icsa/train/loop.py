"""The triplet training loop (NetVLAD recipe, docs/science.md; pytorch-NetVlad's ``train``).

One epoch: shuffle the trainable queries (a Generator seeded by (seed, epoch), so an epoch is
the same whether or not the run was interrupted before it); cut them into chunks of
``cache_refresh`` queries; for each chunk, describe the whole training database and the chunk's
queries with the current model (the mining cache), then step through the chunk in batches of
``batch_size`` queries, mining each query's triplet from the cache. The loss is the triplet
margin loss of every (query, positive, negative) triple, summed and divided by the number of
negatives. After the epoch: validation Recall@N, lr schedule, checkpoints, early stopping.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from icsa.data import PlaceSplit
from icsa.errors import InputError
from icsa.evaluate.policy import policy_for
from icsa.evaluate.recall import RECALL_VALUES, retrieve
from icsa.fast_inference import channels_last
from icsa.spec import RunSpec
from icsa.train.checkpoint import run_identity
from icsa.train.gradient_cache import Backward, gradient_cache, require_chunkable
from icsa.train.history import RunLogger, write_history
from icsa.train.job import RunContext
from icsa.train.mining import HardNegativeMiner, MinedTriplet
from icsa.train.prefix_cache import InputSource
from icsa.train.state import (
    CHECKPOINT_BEST_STATE,
    CHECKPOINT_LAST,
    RunState,
    Sources,
    publish_best,
    write_best_checkpoint,
)
from icsa.train.verified import save_verified

log = logging.getLogger(__name__)


# Training stops as diverged when the trainable weights' L2 norm leaves [0, 1000 ×] its value at
# the start of the run (or is not finite). Weight decay keeps a sound run near its initial norm
# (tiny city, 3 epochs: within a factor of 2, tests/test_faults.py); lr 1e4 there reaches 3e7×. The
# triplet loss of L2-normalised descriptors is bounded, so it cannot show the explosion itself.
DIVERGENCE_FACTOR = 1000.0


MINING_CACHE_SHARE = 0.5  # of the GPU's free memory the mining cache may take


def mining_cache_device(nbytes: int, device: torch.device, free_bytes: int) -> torch.device:
    """The training device for a mining cache of ``nbytes`` when that is the CPU or the cache
    fits in ``MINING_CACHE_SHARE`` of the GPU's ``free_bytes``; else the CPU (Pitts250k's
    database at K = 64 is 12 GB of descriptors). Mining gives the same triplets on either
    (icsa.train.mining.HardNegativeMiner.mine_batch; up to distances tied within float32
    rounding), only its speed differs."""
    if device.type != "cuda" or nbytes <= MINING_CACHE_SHARE * free_bytes:
        return device
    return torch.device("cpu")


class NonFiniteLossError(InputError):
    """The loss became NaN/inf: the recipe (e.g. lr) or the data drive training to diverge."""


class DivergedError(InputError):
    """The weights exploded (or became NaN/inf): the epoch is never saved, training stops."""


class TripletTrainer:
    """Epochs of triplet training: given a run's state, its input sources, the mining geometry
    and miner, the run's RunSpec (recipe, seed, dataset: whose run the checkpoints say it is),
    where it works (:class:`icsa.train.job.RunContext`) and a logger; it trains, validates,
    checkpoints and logs each epoch. The constructor only stores what it is given
    (icsa.train.run composes them)."""

    def __init__(
        self,
        state: RunState,
        sources: Sources,
        miner: HardNegativeMiner | None,
        val: PlaceSplit,
        spec: RunSpec,
        context: RunContext,
        logger: RunLogger,
        fast: bool = False,
    ) -> None:
        self.state, self.sources, self.miner, self.val = state, sources, miner, val
        self.spec, self.settings, self.seed = spec, spec.recipe, int(spec.seed)
        self.run_dir, self.device, self.logger = context.run_dir, context.device, logger
        self.geometry = getattr(miner, "geometry", None)  # None: a regime without triplets
        # CUDA mixed precision for every pass (bfloat16, or float16 with the GradScaler); else
        # bfloat16 for the forward-only passes (describe) with ``fast``.
        self.amp_dtype = state.amp_dtype
        self.fast = fast and self.amp_dtype is None
        self.channels_last = self.device.type == "cuda"  # faster convolutions on tensor cores
        self.descriptor_dim = state.model.descriptor_dim
        require_chunkable(state.model, self.settings.step_chunk, spec.id)

    def checkpoint(self) -> dict[str, Any]:
        """The run's state as a checkpoint, with whose run it is (from the RunSpec)."""
        return self.state.to_checkpoint(run_identity(self.spec))

    def end_epoch(self, row: dict[str, Any]) -> None:
        """Record an epoch: early-stopping counters, checkpoints (last, and best), logs.

        Only trained epochs (>= 1) can become the best checkpoint, as in the public code: epoch
        0 (the untrained model, ``validate_untrained``) is logged for the curves, never selected,
        so a module that never beats its initialisation cannot report the initial model's
        numbers (for ``icsa``/``ch``/``ia`` those equal the ``none`` baseline's bit for bit).
        Each row records the best epoch so far and whether training stopped early, so the last
        row of the history says which epoch the tables' numbers come from.
        """
        st = self.state
        st.epoch = int(row["epoch"])
        trained = st.epoch > 0
        improved = trained and row["recall@5"] > st.best_recall
        if improved:
            st.best_recall, st.best_epoch = float(row["recall@5"]), st.epoch
            st.epochs_without_improvement = 0
        elif trained:
            st.epochs_without_improvement += 1
            patience = self.settings.patience
            if patience > 0 and st.epochs_without_improvement >= patience:
                log.info(
                    "early stop after epoch %d: val Recall@5 not better than %.4f "
                    "(epoch %d) for %d epochs",
                    st.epoch, st.best_recall, st.best_epoch, patience,
                )  # fmt: skip
                st.stopped = True
        row["best_epoch"] = st.best_epoch if st.best_epoch > 0 else None
        row["stopped_early"] = st.stopped
        st.history.append(row)
        checkpoint = self.checkpoint()
        if improved:
            # A copy: the state dicts share storage with the model and optimiser, which train on.
            st.best_checkpoint = copy.deepcopy(checkpoint)
            save_verified(self.run_dir / CHECKPOINT_BEST_STATE, checkpoint)
            publish_best(self.run_dir)
        # checkpoint_last goes last: once it names an epoch, everything of that epoch is on disk,
        # the best epoch's checkpoint included.
        save_verified(
            self.run_dir / CHECKPOINT_LAST, {**checkpoint, "best_checkpoint": st.best_checkpoint}
        )
        self.logger.log_epoch(row, st.history)

    def _autocast(self, fast: bool = False) -> torch.autocast:
        dtype = getattr(torch, self.amp_dtype or "bfloat16")
        return torch.autocast(self.device.type, dtype=dtype, enabled=bool(self.amp_dtype) or fast)

    def _prefix(self, inputs: torch.Tensor, cached: bool, fast: bool = False) -> torch.Tensor:
        """What enters the trained blocks: cached prefixes as given, or the frozen blocks'
        output of images (no graph: the frozen blocks need none)."""
        inputs = channels_last(inputs.to(self.device, non_blocking=True), self.channels_last)
        if cached:
            return inputs
        with torch.no_grad(), self._autocast(fast):
            return self.state.model.frozen_prefix(inputs)

    def _head(self, prefix: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """Descriptors [B, K*C] from prefixes: trained blocks → attention → aggregator."""
        with self._autocast(fast):
            return self.state.model.forward_from_prefix(prefix).float()

    def _encode(self, inputs: torch.Tensor, cached: bool, fast: bool = False) -> torch.Tensor:
        """Descriptors [B, K*C] of a batch of prefixes (cached) or images; ``fast``: bfloat16
        (forward-only callers)."""
        return self._head(self._prefix(inputs, cached, fast), fast)

    @torch.no_grad()
    def describe_on_device(
        self, src: InputSource, indices: np.ndarray, keep_on: torch.device | None = None
    ) -> torch.Tensor:
        """Descriptors [len(indices), K*C] (float32) of ``indices`` of one input source, in eval
        mode, kept on ``keep_on`` (default: the training device, where the steps mine them)."""
        self.state.model.eval()
        keep_on = self.device if keep_on is None else keep_on
        out = [
            self._encode(batch, src.cached, self.fast).to(keep_on)
            for batch in src.batches(
                indices, self.settings.eval_batch_size, self.settings.num_workers
            )
        ]
        if not out:
            return torch.zeros((0, self.descriptor_dim), device=keep_on)
        return torch.cat(out)

    def _mining_device(self, rows: int) -> torch.device:
        """Where this refresh's mining cache (``rows`` descriptors) lives (mining_cache_device)."""
        free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else 0
        return mining_cache_device(rows * self.descriptor_dim * 4, self.device, free)

    def describe(self, src: InputSource, indices: np.ndarray) -> np.ndarray:
        """Descriptors (float32 numpy) of ``indices`` of one input source, in eval mode."""
        return self.describe_on_device(src, indices).cpu().numpy()

    def validate(self) -> dict[str, float]:
        """Validation Recall@N under the validation dataset's own evaluation policy, the rules
        ``icsa evaluate`` applies to it (icsa.evaluate.policy.policy_for): the split's index
        lists where it carries them (MSLS-val's pIdx), TokyoTM's time rule, Tokyo 24/7's
        panoramas, else the UTM radius; so checkpoint selection counts what the tables count."""
        # Before describing: a missing capture time or list is cheap to report.
        rules = policy_for(self.val.dataset, split=self.val).retrieval_rules(self.val)
        db = self.describe(self.sources.val_db, np.arange(len(self.sources.val_db)))
        q = self.describe(self.sources.val_q, np.arange(len(self.sources.val_q)))
        vdb = self.val.db
        result = retrieve(
            db, q, vdb.db_utm, vdb.q_utm, max(RECALL_VALUES), float(vdb.pos_dist_thr), **rules
        )
        return {f"recall@{n}": float(r) for n, r in result.recalls(RECALL_VALUES).items()}

    def _step_descriptors(
        self, inputs: torch.Tensor, cached: bool
    ) -> tuple[torch.Tensor, Backward]:
        """A step's descriptors [N, K*C] with their graph, or, with ``train.step_chunk`` below
        N, from the gradient cache (icsa/train/gradient_cache.py) with its second pass to run
        after ``loss.backward()``."""
        chunk = self.settings.step_chunk
        if chunk and chunk < len(inputs):
            return gradient_cache(self._prefix(inputs, cached), self._head, chunk)
        return self._encode(inputs, cached), None

    def _step_inputs(self, triplets: list[MinedTriplet]) -> tuple[torch.Tensor, list[int]]:
        """A step's inputs [B + B + N, ...] (queries, positives, negatives: cached prefixes or
        images) and each query's number of negatives."""
        q_idx = np.array([t.query for t in triplets])
        p_idx = np.array([t.positive for t in triplets])
        n_idx = np.concatenate([t.negatives for t in triplets])
        q_src, db_src = self.sources.train_q, self.sources.train_db
        # One forward over query, positives and negatives, as pytorch-NetVlad (BatchNorm in
        # trained blocks sees the whole batch).
        inputs = torch.cat([q_src.get(q_idx), db_src.get(np.concatenate([p_idx, n_idx]))])
        return inputs, [len(t.negatives) for t in triplets]

    def _triplet_loss(self, desc: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """The margin loss of every (query, positive, negative) of descriptors [B + B + N, D],
        summed and divided by the number of negatives N."""
        b = len(counts)
        d_q, d_p, d_n = desc[:b], desc[b : 2 * b], desc[2 * b :]
        owner = torch.repeat_interleave(
            torch.arange(b, device=desc.device), torch.tensor(counts, device=desc.device)
        )
        loss = F.triplet_margin_loss(
            d_q[owner], d_p[owner], d_n, margin=self.settings.margin, p=2, reduction="sum"
        )
        return loss / sum(counts)

    def _loss(self, triplets: list[MinedTriplet]) -> tuple[torch.Tensor, int, Backward]:
        """The step's loss, the number of negatives, and how to back-propagate it."""
        inputs, counts = self._step_inputs(triplets)
        desc, backward = self._step_descriptors(inputs, self.sources.train_db.cached)
        return self._triplet_loss(desc, counts), sum(counts), backward

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch (1-based); returns its statistics."""
        s = self.settings
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.geometry.trainable_queries)
        chunks = [order[i : i + s.cache_refresh] for i in range(0, len(order), s.cache_refresh)]
        total = sum(-(-len(c) // s.batch_size) for c in chunks)
        stats = {
            "loss_sum": 0.0,
            "steps": 0,
            "triplets": 0,
            "queries_used": 0,
            "skipped": 0,
            "train_s": 0.0,
            "cache_refresh_s": 0.0,
        }
        bar = tqdm(total=total, desc=f"epoch {epoch}", mininterval=5, leave=False)
        batch_no = 0
        for chunk_no, chunk in enumerate(chunks, start=1):
            t0 = time.perf_counter()
            where = self._mining_device(len(self.sources.train_db) + len(chunk))
            db_desc = self.describe_on_device(
                self.sources.train_db, np.arange(len(self.sources.train_db)), where
            )
            q_desc = self.describe_on_device(self.sources.train_q, chunk, where)
            if not bool(torch.isfinite(db_desc).all() and torch.isfinite(q_desc).all()):
                raise NonFiniteLossError(
                    f"epoch {epoch}, mining-cache refresh {chunk_no} (before step {batch_no + 1})"
                    ": non-finite descriptors; the model diverged (lower lr?) or an input is bad"
                )
            t1 = time.perf_counter()
            stats["cache_refresh_s"] += t1 - t0
            for start in range(0, len(chunk), s.batch_size):
                batch_no += 1
                bar.update(1)
                # The step's queries are rows start… of the chunk's query descriptors.
                queries = [int(q) for q in chunk[start : start + s.batch_size]]
                rows = slice(start, start + len(queries))
                mined = self.miner.mine_batch(queries, q_desc[rows], db_desc, rng)
                triplets = [t for t in mined if t is not None]
                stats["skipped"] += len(mined) - len(triplets)
                if not triplets:
                    continue
                self.state.model.train()
                self.state.optimizer.zero_grad(set_to_none=True)
                loss, used, backward = self._loss(triplets)
                self.state.scaler.scale(loss).backward()
                if backward is not None:  # the gradient cache's second pass (step_chunk)
                    backward()
                self.state.scaler.step(self.state.optimizer)
                self.state.scaler.update()
                # The step's one read of a device value, after its work is queued (a check
                # before the backward pass would stall a GPU's queue mid-step). A non-finite
                # loss stops training here: the step's update stays in memory, never on disk.
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise NonFiniteLossError(
                        f"epoch {epoch}, step {batch_no}: loss is {value} (queries "
                        f"{[t.query for t in triplets]}); the model diverged (lower lr?) or an "
                        "input is bad"
                    )
                stats["loss_sum"] += value
                stats["steps"] += 1
                stats["triplets"] += used
                stats["queries_used"] += len(triplets)
            stats["train_s"] += time.perf_counter() - t1
        bar.close()
        return stats

    def _check_divergence(self, epoch: int) -> None:
        norm, start = self.state.weight_norm(), self.state.initial_weight_norm
        key = "ms_lr" if self.settings.regime == "multisimilarity" else "lr"
        lr = getattr(self.settings, key)
        if not np.isfinite(norm) or norm > DIVERGENCE_FACTOR * max(start, 1e-12):
            raise DivergedError(
                f"{self.run_dir}: training diverged in epoch {epoch}: the trainable weights' L2 "
                f"norm is {norm:.3g}, {norm / max(start, 1e-12):.3g}× its initial {start:.3g} "
                f"(bound: {DIVERGENCE_FACTOR:g}×); lower train.{key} ({lr:g}). The diverged "
                "epoch was not saved"
            )

    def _untrained_row(self) -> dict[str, Any]:
        """Epoch 0's row entries besides its recalls."""
        return {"queries_without_positive": self.geometry.queries_without_positive}

    def _stats_row(self, stats: dict[str, float]) -> dict[str, Any]:
        """A trained epoch's row entries from ``train_epoch``'s statistics, in history order."""
        steps = stats["steps"]
        return {
            "loss": stats["loss_sum"] / steps if steps else None,
            "steps": steps,
            "triplets": stats["triplets"],
            "queries_used": stats["queries_used"],
            "queries_skipped_no_violation": stats["skipped"],
            "queries_without_positive": self.geometry.queries_without_positive,
        }

    def _end_epoch_schedule(self) -> None:
        """The lr schedule after an epoch (StepLR counts epochs)."""
        self.state.scheduler.step()

    def fit(self) -> dict:
        """Train until ``epochs`` or early stopping; returns the last history row."""
        s = self.settings
        if not self.state.history and s.validate_untrained:
            t0 = time.perf_counter()
            row = {
                "epoch": 0,
                "lr": self.state.optimizer.param_groups[0]["lr"],
                **self.validate(),
                **self._untrained_row(),
                "val_s": time.perf_counter() - t0,
            }
            self.end_epoch(row)
        while self.state.epoch < s.epochs and not self.state.stopped:
            epoch = self.state.epoch + 1
            lr = self.state.optimizer.param_groups[0]["lr"]
            stats = self.train_epoch(epoch)
            self._check_divergence(epoch)
            t0 = time.perf_counter()
            recalls = self.validate()
            self._end_epoch_schedule()
            row = {
                "epoch": epoch,
                "lr": lr,
                **self._stats_row(stats),
                **recalls,
                "train_s": stats["train_s"],
                "cache_refresh_s": stats["cache_refresh_s"],
                "val_s": time.perf_counter() - t0,
            }
            self.end_epoch(row)
        write_best_checkpoint(self.run_dir, self.state)  # a rerun may have deleted it
        write_history(self.run_dir, self.state.history)  # also when a finished run is re-invoked
        self.logger.close()
        return self.state.history[-1] if self.state.history else {}
