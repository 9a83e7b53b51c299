"""Training recipe values (the NetVLAD recipe, docs/science.md) as one frozen dataclass; the
``regime`` and ``ms_*`` keys select and set the multisimilarity regime instead
(icsa/train/multisimilarity.py).

Every number the training loop uses lives here so that Snakemake can pass the whole recipe as a
JSON ``params:`` value and DVC can track it. Defaults follow pytorch-NetVlad (Arandjelović et al.):
SGD lr 1e-4, momentum 0.9, weight decay 1e-3, lr halved every 5 epochs, 4 queries per batch,
1000 sampled negatives of which the 10 hardest margin-violating ones are kept, a descriptor
cache refreshed every 1000 queries, early stopping on validation Recall@5 after 10 epochs
without improvement.

Where the two reference implementations differ, icsa follows Relja Arandjelović's MATLAB
netvlad rather than the PyTorch port, and says so here:

- **lr step**: the lr is multiplied by ``lr_gamma`` after every ``lr_step`` trained epochs
  (epochs 1-5 at ``lr``, 6-10 at half, ...). pytorch-NetVlad calls ``scheduler.step()`` at the
  *start* of each epoch, which (with current torch semantics) halves one epoch earlier.
- **early stopping**: training stops after ``patience`` trained epochs in a row without a
  better validation Recall@5; pytorch-NetVlad stops only when ``not_improved > patience``,
  i.e. after ``patience + 1`` such epochs.
- **checkpoint selection** agrees with both: only trained epochs (>= 1) can be best; epoch 0
  (``validate_untrained``) is logged for the curves, never selected (``state.end_epoch``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from icsa.errors import InputError
from icsa.fast_inference import MODES
from icsa.records import record_from_dict

PREFIX_CACHE_DTYPES = ("float16", "float32")
OPTIMIZERS = ("sgd", "adam")
REGIMES = ("triplet", "multisimilarity")
MS_AUGMENTS = ("randaugment", "none")
# Keys added after runs were recorded, with the value those runs implicitly had. The regime and
# the multisimilarity keys are here too: a triplet run's spec and fingerprint stay what they were.
LATER_KEYS = {
    "optimizer": "sgd",
    "regime": "triplet",
    "ms_places_per_batch": 60,
    "ms_images_per_place": 4,
    "ms_place_cell_m": 10.0,
    "ms_lr": 6e-5,
    "ms_weight_decay": 9.5e-9,
    "ms_warmup_steps": 800,
    "ms_decay_steps": 4000,
    "ms_end_factor": 0.2,
    "ms_alpha": 1.0,
    "ms_beta": 50.0,
    "ms_base": 0.0,
    "ms_epsilon": 0.1,
    "ms_augment": "randaugment",
    "step_chunk": 0,
}
MS_KEYS = tuple(k for k in LATER_KEYS if k == "regime" or k.startswith("ms_"))
_ABSENT = object()
FAST_MODES = MODES  # icsa.fast_inference: torch-free at import


@dataclass(frozen=True)
class TrainSettings:
    """The recipe; ``from_dict`` accepts a mapping with any subset of these keys (a run's spec,
    the config's ``train`` section)."""

    epochs: int = 30
    # sgd (the recipe) or adam (pytorch-NetVlad's --optim ADAM: Adam over the same parameters;
    # here it keeps weight_decay and the lr step, which the port drops for Adam).
    optimizer: str = "sgd"
    batch_size: int = 4  # queries per step; each brings 1 positive and up to neg_kept negatives
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-3
    lr_step: int = 5  # StepLR step size in epochs
    lr_gamma: float = 0.5
    # Margin on non-squared L2 distances: pytorch-NetVlad's --margin 0.1 enters as sqrt(0.1).
    margin: float = math.sqrt(0.1)
    pos_radius: float = 10.0  # non-trivial training positives (metres, inclusive)
    neg_radius: float = 25.0  # negatives lie strictly beyond this (metres)
    neg_samples: int = 1000  # negatives drawn (with replacement) per query and step
    neg_kept: int = 10  # hardest margin violators kept, and remembered for the next visit
    cache_refresh: int = 1000  # queries between refreshes of the mining descriptor cache
    patience: int = 10  # epochs without a better val Recall@5 before stopping
    eval_batch_size: int = 16  # images per forward pass when filling caches and validating
    num_workers: int = 0  # DataLoader workers for image decoding; threads for a step's images
    # Inputs per forward/backward pass of a step: 0 = all of them at once (the reference). A
    # positive value runs the step as a gradient cache (icsa/train/gradient_cache.py): the same
    # loss and gradients up to float rounding, the activation memory of step_chunk inputs, one
    # more forward of the trained blocks. Refused with BatchNorm in the trained blocks.
    step_chunk: int = 0
    amp: bool = False  # CUDA mixed precision: bfloat16, or float16 + GradScaler (CPU: ignored)
    validate_untrained: bool = True  # log val recall of the initial model as epoch 0
    prefix_cache: bool = True  # cache the frozen prefix once per image (see prefix_cache.py)
    prefix_cache_dtype: str = "float16"
    prefix_cache_budget_mb: float = 8192.0
    # bfloat16 for the forward-only work (prefix cache, mining refresh, validation):
    # auto | on | off (icsa.fast_inference); off is float32 as before.
    fast_inference: str = "off"
    # triplet (the recipe above) or multisimilarity (icsa/train/multisimilarity.py: P places x K
    # images per batch, pytorch-metric-learning's Multi-Similarity miner and loss, AdamW with
    # warm-up). The ms_* keys are that regime's alone; defaults from the references:
    regime: str = "triplet"
    ms_places_per_batch: int = 60  # P (gsv-cities main.py batch_size)
    ms_images_per_place: int = 4  # K (gsv-cities img_per_place = min_img_per_place)
    ms_place_cell_m: float = 10.0  # a place of a UTM split: a square cell (icsa/train/places.py)
    ms_lr: float = 6e-5  # AdamW lr and weight decay: serizba/salad main.py
    ms_weight_decay: float = 9.5e-9
    ms_warmup_steps: int = 800  # linear warm-up (gsv-cities VPRModel.optimizer_step)
    ms_decay_steps: int = 4000  # then linear decay to ms_end_factor (salad's LinearLR)
    ms_end_factor: float = 0.2
    ms_alpha: float = 1.0  # MultiSimilarityLoss(alpha, beta, base): gsv-cities utils/losses.py
    ms_beta: float = 50.0
    ms_base: float = 0.0
    ms_epsilon: float = 0.1  # MultiSimilarityMiner(epsilon): gsv-cities miner_margin
    ms_augment: str = "randaugment"  # RandAugment(num_ops=2) as gsv-cities' train transform

    def __post_init__(self) -> None:
        positive_ints = (
            "epochs",
            "batch_size",
            "lr_step",
            "neg_samples",
            "neg_kept",
            "cache_refresh",
            "eval_batch_size",
            "ms_places_per_batch",
            "ms_decay_steps",
        )
        for key in positive_ints:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"train settings: {key}={value!r}, expected an integer >= 1")
        k = self.ms_images_per_place
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise InputError(
                f"train settings: ms_images_per_place={self.ms_images_per_place!r}, expected an "
                "integer >= 2 (a place needs a positive pair)"
            )
        for key in ("patience", "num_workers", "ms_warmup_steps", "step_chunk"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"train settings: {key}={value!r}, expected an integer >= 0")
        # lr is only required to be positive: a diverging lr is a legitimate (bad) recipe that
        # the loop must catch as a non-finite loss, not a settings error.
        for key in (
            "lr",
            "margin",
            "pos_radius",
            "neg_radius",
            "lr_gamma",
            "prefix_cache_budget_mb",
            "ms_place_cell_m",
            "ms_lr",
            "ms_end_factor",
            "ms_alpha",
            "ms_beta",
        ):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise InputError(f"train settings: {key}={value!r}, expected a number > 0")
        for key in ("momentum", "weight_decay", "ms_weight_decay", "ms_base", "ms_epsilon"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InputError(f"train settings: {key}={value!r}, expected a number >= 0")
        if self.pos_radius > self.neg_radius:
            raise InputError(
                f"train settings: pos_radius={self.pos_radius} > neg_radius={self.neg_radius}, "
                "expected positives to lie inside the negative exclusion radius"
            )
        if self.optimizer not in OPTIMIZERS:
            raise InputError(
                f"train settings: optimizer={self.optimizer!r}, expected one of {OPTIMIZERS}"
            )
        for key, valid in (("regime", REGIMES), ("ms_augment", MS_AUGMENTS)):
            if getattr(self, key) not in valid:
                raise InputError(
                    f"train settings: {key}={getattr(self, key)!r}, expected one of {valid}"
                )
        if self.prefix_cache_dtype not in PREFIX_CACHE_DTYPES:
            raise InputError(
                f"train settings: prefix_cache_dtype={self.prefix_cache_dtype!r}, "
                f"expected one of {PREFIX_CACHE_DTYPES}"
            )
        if self.fast_inference not in FAST_MODES:
            raise InputError(
                f"train settings: fast_inference={self.fast_inference!r}, expected one of "
                f"{FAST_MODES}"
            )
        for key in ("amp", "validate_untrained", "prefix_cache"):
            if not isinstance(getattr(self, key), bool):
                raise InputError(f"train settings: {key}={getattr(self, key)!r}, expected a bool")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train settings") -> TrainSettings:
        """Build from a mapping; unknown keys are an error (a typo must not pass silently)."""
        return record_from_dict(cls, data, source)

    def to_dict(self) -> dict[str, Any]:
        """Every key, but for those added later while they hold the value every earlier recipe
        had: a run's spec, params and fingerprint stay what they were, so adding a setting
        never retrains or restarts existing runs."""
        values = dataclasses.asdict(self)
        # A multisimilarity run states its whole regime (its spec and fingerprint name them all).
        kept = MS_KEYS if self.regime != "triplet" else ()
        return {k: v for k, v in values.items() if k in kept or LATER_KEYS.get(k, _ABSENT) != v}
