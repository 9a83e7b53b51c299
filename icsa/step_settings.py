"""The settings of the workflow steps ``kmeans``, ``extract``, ``evaluate`` and ``efficiency``.

Each config section of that name is one frozen record here, and each field's default is THE
default of that setting: the JSON schema (workflow/schemas/config.schema.yaml) carries only
types and ranges, the workflow reads the section through :func:`icsa.pipeline.step_settings`,
the CLI (``icsa kmeans``, ``icsa extract``, ``icsa evaluate``, ``icsa efficiency``) takes its
flag defaults from these fields, and the library functions theirs. So a step run by hand with
no value given behaves as the same step in the workflow whose config gives none
(tests/test_defaults.py compares the four). The shipped configs set every key explicitly.
No torch: the CLI's ``--help`` and the workflow's parse read this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from icsa.errors import InputError
from icsa.fast_inference import MODES
from icsa.records import record_from_dict

# Recall@N reported for every evaluation (NetVLAD's table columns); also the validation
# recall of training (icsa.train.loop).
RECALL_VALUES = (1, 5, 10, 20)
# NetVLAD's positive radius: a database image within 25 m (inclusive) of a query is a positive.
POSITIVE_RADIUS_M = 25.0
# What descriptor files may be stored as (icsa.evaluate.extract).
DTYPES = ("float32", "float16")


def _check_int(section: str, key: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{section}.{key} = {value!r}; expected an integer >= {minimum}")


def _check_choice(section: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{section}.{key} = {value!r}; expected one of {list(choices)}")


@dataclass(frozen=True)
class KMeansSettings:
    """``kmeans:``: the sample NetVLAD's centroids are clustered from (icsa.train.kmeans).

    The defaults are pytorch-NetVlad's ``get_clusters``: 50,000 descriptors as 100 from each of
    500 database images, 100 faiss iterations. config/config.yaml sets a smaller sample for the
    small synthetic city (200/20/50); config/pittsburgh.yaml restates these.
    """

    max_images: int = 500  # database images sampled at most (all of them if fewer)
    descriptors_per_image: int = 100  # random feature-map locations taken from each image
    iterations: int = 100  # faiss k-means rounds

    def __post_init__(self) -> None:
        for key in ("max_images", "descriptors_per_image", "iterations"):
            _check_int("kmeans", key, getattr(self, key), 1)


@dataclass(frozen=True)
class ExtractSettings:
    """``extract:``: how descriptors of an evaluation set are computed (icsa.evaluate.extract)."""

    batch_size: int = 16  # images per forward pass; no effect on the descriptors
    # DataLoader worker processes decoding images. 0 (decode in the job's own process): a
    # workflow job is given `resources.<step>.cpus` threads, and worker processes would run
    # beside them on CPUs the scheduler gave to other jobs; a machine with spare cores (the
    # paper's GPU setting, config/pittsburgh.yaml: 8) raises it explicitly. As TrainSettings'
    # num_workers.
    workers: int = 0
    dtype: str = "float32"  # stored precision of the .npy files (float16 halves their size)
    # bfloat16 + channels_last where the device has bfloat16 instructions (icsa.fast_inference).
    # "off" (float32): the descriptors, hence every Recall@N, are then the same on every
    # machine, and the same as the training's own validation (TrainSettings.fast_inference is
    # "off" too); "auto" would make a run's numbers depend on the CPU it lands on. The speed-up
    # is an explicit choice: config/config.yaml and config/pittsburgh.yaml set "auto", with the
    # measurement behind it (benchmarks/results/fast_inference.md).
    fast_inference: str = "off"

    def __post_init__(self) -> None:
        _check_int("extract", "batch_size", self.batch_size, 1)
        _check_int("extract", "workers", self.workers, 0)
        _check_choice("extract", "dtype", self.dtype, DTYPES)
        _check_choice("extract", "fast_inference", self.fast_inference, MODES)


@dataclass(frozen=True)
class EvaluateSettings:
    """``evaluate:``: the NetVLAD protocol's Recall@N (icsa.evaluate.recall)."""

    ns: tuple[int, ...] = RECALL_VALUES  # the N of Recall@N, each >= 1
    threshold: float = POSITIVE_RADIUS_M  # positive radius in metres (inclusive)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ns", tuple(self.ns))
        if not self.ns:
            raise InputError("evaluate.ns = []; expected one or more integers >= 1, e.g. [1, 5]")
        for n in self.ns:
            _check_int("evaluate", "ns", n, 1)
        value = self.threshold
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise InputError(f"evaluate.threshold = {value!r}; expected a number of metres > 0")


@dataclass(frozen=True)
class EfficiencySettings:
    """``efficiency:``: Table 2's measurement of module size and speed (icsa.analysis.efficiency).

    The defaults are the paper's Table 2: one 512×30×40 feature map (VGG16's conv5_3 at 480×640).
    """

    channels: int = 512  # C of the feature map the modules receive
    height: int = 30  # H
    width: int = 40  # W
    batch_size: int = 1  # feature maps per timed forward call
    # Timed calls per module (after a warm-up); the median and IQR are reported. 50 keeps the
    # median stable on a shared CPU; the embedded config sets 20 for its time budget.
    repeats: int = 50

    def __post_init__(self) -> None:
        for key in ("channels", "height", "width", "batch_size", "repeats"):
            _check_int("efficiency", key, getattr(self, key), 1)


# Config section → its record. icsa.pipeline.step_settings reads a section through this.
STEP_SETTINGS: dict[str, type] = {
    "kmeans": KMeansSettings,
    "extract": ExtractSettings,
    "evaluate": EvaluateSettings,
    "efficiency": EfficiencySettings,
}


def settings_from_dict(section: str, data: Any) -> Any:
    """The record of config section ``section`` from its mapping (None: every default); an
    unknown key is an InputError naming it and the valid keys."""
    if section not in STEP_SETTINGS:
        raise InputError(f"step settings {section!r}: expected one of {sorted(STEP_SETTINGS)}")
    return record_from_dict(STEP_SETTINGS[section], data, section)
