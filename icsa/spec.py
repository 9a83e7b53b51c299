"""The pipeline's one specification: what a model and a training run are, their id and paths.

A :class:`ModelSpec` is everything that fixes a network before training (backbone, attention,
K, image size, initial weights, init seed, lowest trained block); a :class:`RunSpec` adds the
dataset, the recipe and the seed. The workflow builds one RunSpec per training job from the
config (:mod:`icsa.pipeline`) and hands it to ``icsa train --spec`` as JSON; the run id and the
fingerprint that decides resume vs restart are defined here and nowhere else; the results
layout is :mod:`icsa.layout`'s, whose run-level path functions (``run_dir``,
``checkpoint_best``, ``metrics_file``, …) this module re-exports (docs/architecture.md, "Run
naming and results layout"). No torch.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from icsa.errors import InputError
from icsa.input_sizes import image_size_problem
from icsa.io import parse_json_object

# The results layout is icsa.layout's; the run-level paths stay importable from here.
from icsa.layout import (  # noqa: F401
    RESULTS,
    checkpoint_best,
    descriptors_file,
    descriptors_record,
    history_file,
    metrics_file,
    perquery_file,
    run_dir,
    run_state_dir,
)
from icsa.records import record_from_dict
from icsa.registry import (
    DEFAULT_AGGREGATION,
    NAME,
    aggregation_of_suffix,
    aggregator_spec,
    attention_spec,
    check_block,
    pool_pattern,
)
from icsa.train.settings import TrainSettings

# ---- run ids and the results layout ----------------------------------------------------------
# {pool}: the aggregator's run-id suffix (icsa.registry.AggregatorSpec.suffix): "" for NetVLAD,
# the paper's, so that its run ids read as before; "-gem" for GeM.
RUN_ID = "{dataset}-{backbone}-{attention}{pool}-b{block}-s{seed}"


def run_id(
    dataset: str,
    backbone: str,
    attention: str,
    block: str | int,
    seed: int | str,
    aggregation: str = DEFAULT_AGGREGATION,
) -> str:
    """``pitts30k-vgg16-icsa-b5-s0``; block ``none`` gives ``bnone``; GeM ``…-icsa-gem-b5-s0``."""
    pool = aggregator_spec(aggregation).suffix
    return RUN_ID.format(
        dataset=dataset, backbone=backbone, attention=attention, pool=pool, block=block, seed=seed
    )


def run_id_regex() -> re.Pattern[str]:
    """A run id's parts as named groups (pool: the suffix). Built when used, from the registered
    aggregators' suffixes: a plugin may register one after this module is imported."""
    return re.compile(
        rf"^(?P<dataset>{NAME})-(?P<backbone>{NAME})-(?P<attention>{NAME})"
        rf"(?P<pool>{pool_pattern()})-b(?P<block>none|[0-9]+)-s(?P<seed>[0-9]+)$"
    )


def parse_run_id(run: str) -> dict[str, str]:
    """The parts of a run id (dataset, backbone, attention, aggregation, block, seed)."""
    match = run_id_regex().match(run)
    if match is None:
        raise InputError(f"run id {run!r}: expected {RUN_ID}, e.g. pitts30k-vgg16-icsa-b5-s0")
    parts = match.groupdict()
    parts["aggregation"] = aggregation_of_suffix(parts.pop("pool") or "")
    return parts


# ---- the specifications ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A network before training; ``build_model(**spec.build_args())`` makes it."""

    backbone: str
    attention: str
    num_clusters: int
    image_size: tuple[int, int]
    weights: str = "none"  # none (seeded random init), imagenet, or a state-dict path
    init_seed: int = 0
    lowest_trained_block: str = "none"  # "none" or "1".."num_blocks"
    aggregation: str = DEFAULT_AGGREGATION  # a registered aggregator (num_clusters: NetVLAD's K)

    def __post_init__(self) -> None:
        block = check_block(self.backbone, self.lowest_trained_block)  # the backbone's too
        attention_spec(self.attention)
        aggregator_spec(self.aggregation)
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "lowest_trained_block", block)
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise InputError(f"image_size={list(self.image_size)}: expected [H, W], positive")
        problem = image_size_problem(self.backbone, self.image_size)
        if problem:
            raise InputError(f"image_size={list(self.image_size)}: expected {problem}")
        if int(self.num_clusters) < 2:
            raise InputError(f"num_clusters={self.num_clusters}: expected at least 2")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model spec") -> ModelSpec:
        return record_from_dict(cls, data, source)

    @classmethod
    def from_flag(cls, text: str, flag: str = "--model-spec") -> ModelSpec:
        """A CLI value: a JSON object or ``@file`` (errors name ``flag``)."""
        return cls.from_dict(parse_json_object(text, flag), flag)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        return out

    def build_args(self) -> dict[str, Any]:
        """The arguments of :func:`icsa.models.build_model`."""
        return self.to_dict()


def _same(a: Any, b: Any) -> bool:
    # image_size may round-trip as a list or a tuple; block as "5" or 5.
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, str)) and isinstance(b, (int, str)) and not isinstance(a, bool):
        return str(a) == str(b)
    return a == b


def check_config(found: dict[str, Any], expected: dict[str, Any], source: str) -> None:
    """Raise InputError naming every key of ``expected`` whose value in ``found`` differs (a
    checkpoint's ``model_config`` or a descriptor file's record against a ModelSpec)."""
    # Checkpoints and records made before GeM existed are NetVLAD models.
    found = {"aggregation": DEFAULT_AGGREGATION, **found}
    diffs = [
        f"{key}: expected {value!r}, found {found.get(key, '<missing>')!r}"
        for key, value in expected.items()
        if key not in found or not _same(found[key], value)
    ]
    if diffs:
        raise InputError(
            f"{source}: model config differs from the expected one: " + "; ".join(diffs)
        )


# Recipe keys that may change between an interrupted (or finished) run and its continuation:
# they decide how long to train, not what one epoch does.
RESUMABLE_CHANGES = ("epochs", "patience", "num_workers", "eval_batch_size")


@dataclass(frozen=True)
class RunSpec:
    """One training run: a model trained on a dataset with a recipe and a seed."""

    dataset: str
    model: ModelSpec
    recipe: TrainSettings
    seed: int

    @property
    def id(self) -> str:
        m = self.model
        return run_id(
            self.dataset, m.backbone, m.attention, m.lowest_trained_block, self.seed, m.aggregation
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "model": self.model.to_dict(),
            "recipe": self.recipe.to_dict(),
            "seed": self.seed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "run spec") -> RunSpec:
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
        fields = dict(data)
        fields["model"] = ModelSpec.from_dict(data.get("model"), f"{source}: model")
        fields["recipe"] = TrainSettings.from_dict(data.get("recipe", {}), f"{source}: recipe")
        return record_from_dict(cls, fields, source)

    def fingerprint(self, inputs: dict[str, str]) -> dict[str, Any]:
        """What determines the trained weights: the spec (but for the resumable recipe keys)
        and the content digests of its inputs (``{role: sha256}``, e.g. of the centroids file
        and the train and val splits: :meth:`PlaceSplit.digest`). Content, not paths: a moved
        checkout is the same run."""
        recipe = {k: v for k, v in self.recipe.to_dict().items() if k not in RESUMABLE_CHANGES}
        return {
            "run": self.id,
            "model": self.model.to_dict(),
            "recipe": recipe,
            "seed": self.seed,
            "inputs": dict(sorted(inputs.items())),
        }


def fingerprint_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between two fingerprints (nested keys joined with '.')."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)
        elif a != b:
            diffs.append(f"{key}: was {a!r}, now {b!r}")

    walk(old, new, "")
    return diffs
