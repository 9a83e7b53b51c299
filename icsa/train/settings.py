"""Training recipe values (the NetVLAD recipe, docs/science.md) as one frozen dataclass.

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
# Keys added after runs were recorded, with the value those runs implicitly had.
LATER_KEYS = {"optimizer": "sgd"}
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
    amp: bool = False  # CUDA mixed precision: bfloat16, or float16 + GradScaler (CPU: ignored)
    validate_untrained: bool = True  # log val recall of the initial model as epoch 0
    prefix_cache: bool = True  # cache the frozen prefix once per image (see prefix_cache.py)
    prefix_cache_dtype: str = "float16"
    prefix_cache_budget_mb: float = 8192.0
    # bfloat16 for the forward-only work (prefix cache, mining refresh, validation):
    # auto | on | off (icsa.fast_inference); off is float32 as before.
    fast_inference: str = "off"

    def __post_init__(self) -> None:
        positive_ints = (
            "epochs",
            "batch_size",
            "lr_step",
            "neg_samples",
            "neg_kept",
            "cache_refresh",
            "eval_batch_size",
        )
        for key in positive_ints:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"train settings: {key}={value!r}, expected an integer >= 1")
        for key in ("patience", "num_workers"):
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
        ):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise InputError(f"train settings: {key}={value!r}, expected a number > 0")
        for key in ("momentum", "weight_decay"):
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
        return {k: v for k, v in values.items() if LATER_KEYS.get(k, _ABSENT) != v}
