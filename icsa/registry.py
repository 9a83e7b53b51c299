"""The registries of backbones, attention modules and aggregators: the one place their names
live (no torch).

Everything else reads names, labels and facts from here: the model builders
(:mod:`icsa.models`), the run ids and their wildcards (:mod:`icsa.spec`, workflow/Snakefile),
the workflow's config checks (:mod:`icsa.pipeline`), k-means' choice of centroids, the tables'
labels and the input-size check. Importing this module does not import torch, so the Snakefile
can validate a config against it at parse time.

Adding a backbone is one :class:`BackboneSpec` entry; an attention module or an aggregator is its
class plus one :class:`AttentionSpec` / :class:`AggregatorSpec` entry (the built-in ones are in
:mod:`icsa.registry_entries`). Code outside the package registers with :func:`register_backbone`,
:func:`register_attention` or :func:`register_aggregator` in a module named under the config's
``plugins:`` (:mod:`icsa.plugins`, whose loaders are re-exported here).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from icsa.errors import InputError

# Re-exported: icsa.registry is where plugins (and the workflow) look.
from icsa.plugins import PLUGINS_ENV as PLUGINS_ENV
from icsa.plugins import load_plugins as load_plugins
from icsa.plugins import load_plugins_from_env as load_plugins_from_env

# The grammar of every registered name, dataset and evaluation-set name: run ids join them with
# "-" (icsa.spec), so a name holds none. The Snakefile's wildcards and the name patterns of
# workflow/schemas/config.schema.yaml are this (a test compares the schema's).
NAME = "[a-z0-9]+"

# ---- backbones -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone as a sequence of blocks: a torchvision classifier cut at its last conv layer,
    or a model a ``build`` function makes (the DINOv2 ViTs, icsa/models/vit.py).

    A torchvision block is a tuple of "cuts" into the full model: ``"features[0:5]"`` is a slice
    of a Sequential child, ``"layer1"`` a named child. Blocks are 1-based in the config ("lowest
    trained block" k trains blocks k…last). With ``build`` (a callable or its import path
    ``"package.module:Name"``, resolved only when a model is built, so this registry stays
    torch-free), ``torchvision`` and ``imagenet_weights`` are None and the builder, called as
    ``build(spec, state_dict_or_None, init_seed)``, returns the blocks; ``blocks`` still names
    them (their count is ``num_blocks``) in the builder's own terms, and ``options`` are its
    keywords.
    """

    name: str
    label: str  # as the paper writes it: VGG16
    torchvision: str | None  # constructor in torchvision.models (None with build)
    imagenet_weights: str | None  # weights enum in torchvision.models (IMAGENET1K_V1 is used)
    blocks: tuple[tuple[str, ...], ...]
    out_channels: int
    stride: int  # nominal: 480×640 → 30×40 for 16
    # Smallest image side with a non-empty feature map (torch's arithmetic, pinned by a test).
    min_image_side: int
    # Parts of the full model the cut drops: their keys may be absent from a weights file.
    dropped_prefixes: tuple[str, ...]
    # "kaiming": torchvision's conv/BN init scheme; "default": each layer's reset_parameters().
    random_init: str = "kaiming"
    build: str | Callable[..., Any] | None = None
    options: tuple[tuple[str, Any], ...] = field(default=())
    # Image sides must be multiples of this (a ViT's patch size; 1: any side).
    side_multiple: int = 1
    # weights="imagenet" for a build backbone: this official checkpoint, read from torch.hub's
    # cache ($TORCH_HOME/hub/checkpoints/<its file name>) only, never downloaded.
    weights_url: str = ""
    # Its blocks hold BatchNorm, which normalises over a step's inputs: train.step_chunk (the
    # gradient cache) does not apply to its trained blocks (icsa.pipeline.run_spec).
    batch_norm: bool = False

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def constructor(self) -> Callable[..., Any]:
        if self.build is None:
            raise InputError(f"backbone {self.name}: a torchvision cut, it has no build")
        return _resolve(self.build, "backbone", self.name)


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone; its name must be new and a lowercase word (run ids are built from it)."""
    _check_new_name(spec.name, BACKBONES, "backbone", "BACKBONES")
    if spec.random_init not in ("kaiming", "default"):
        raise InputError(
            f"backbone {spec.name}: random_init={spec.random_init!r}; expected kaiming or default"
        )
    if (spec.build is None) == (spec.torchvision is None) or spec.side_multiple < 1:
        raise InputError(
            f"backbone {spec.name}: torchvision={spec.torchvision!r}, build={spec.build!r}, "
            f"side_multiple={spec.side_multiple}; expected exactly one of torchvision and build, "
            "and side_multiple >= 1"
        )
    BACKBONES[spec.name] = spec
    return spec


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise InputError(f"backbone={name!r}: expected one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def check_block(
    backbone: str, block: str | int | None, key: str = "lowest_trained_block", last: bool = False
) -> str:
    """The lowest trained block of ``backbone`` as configs and run ids write it: ``"none"``
    (None accepted: only attention and aggregator train) or ``"1"``…``"num_blocks"`` (ints
    accepted); with ``last``, ``"last"`` → the last block. An InputError names ``key``."""
    num_blocks = backbone_spec(backbone).num_blocks
    text = "none" if block is None else str(block)
    if last and text == "last":
        return str(num_blocks)
    if text != "none" and not (text.isdigit() and 1 <= int(text) <= num_blocks):
        names = "none, last" if last else "none"
        raise InputError(f"{key} = {text!r}; expected {names} or 1..{num_blocks} for {backbone}")
    return text


# ---- attention modules -----------------------------------------------------------------------

SIZE_ARGUMENTS = ("channels", "height", "width")


@dataclass(frozen=True)
class AttentionSpec:
    """An attention module between the backbone and the aggregator.

    ``build`` is a class or callable returning the ``nn.Module``, or its import path
    ``"package.module:Name"`` (resolved when a model is built, so that this registry stays
    torch-free); it is called with the feature-map sizes named in ``arguments`` (of channels,
    height, width, in that order) and then ``options`` as keywords. ``identity_at_init``: the
    untrained module passes features through unchanged, so NetVLAD's k-means centroids can be
    shared with the plain backbone (icsa.centroids).
    """

    name: str
    label: str  # ICSA, SENet, ...
    build: str | Callable[..., Any]
    identity_at_init: bool
    arguments: tuple[str, ...] = ("channels", "height", "width")
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_arguments("attention", self.name, self.arguments, SIZE_ARGUMENTS)

    def instantiate(self, channels: int, height: int, width: int) -> Any:
        sizes = {"channels": channels, "height": height, "width": width}
        args = [sizes[a] for a in self.arguments]
        return self.constructor()(*args, **dict(self.options))

    def constructor(self) -> Callable[..., Any]:
        return _resolve(self.build, "attention", self.name)


ATTENTIONS: dict[str, AttentionSpec] = {}


def register_attention(spec: AttentionSpec) -> AttentionSpec:
    """Add an attention module; its name must be new and a lowercase word."""
    _check_new_name(spec.name, ATTENTIONS, "attention", "ATTENTIONS")
    ATTENTIONS[spec.name] = spec
    return spec


def attention_spec(name: str) -> AttentionSpec:
    if name not in ATTENTIONS:
        raise InputError(f"attention={name!r}: expected one of {', '.join(ATTENTIONS)}")
    return ATTENTIONS[name]


# ---- aggregators -----------------------------------------------------------------------------

AGGREGATOR_ARGUMENTS = ("channels", "num_clusters", "height", "width")


@dataclass(frozen=True)
class AggregatorSpec:
    """How the local features [B,C,h,w] become one L2-normalised descriptor [B,D].

    ``build`` (a class or callable, or its import path ``"package.module:Name"``) returns the
    ``nn.Module``; it is called with the values named in ``arguments`` (of channels: C,
    num_clusters: the config's ``model.num_clusters``, height and width: h and w of the feature
    map at the configured image size, for aggregators with weights over locations such as
    MixVPR), then ``options`` as keywords. The module has ``output_dim`` (D). ``suffix`` marks
    its run ids (``pitts30k-vgg16-icsa{suffix}-b5-s0``): ``"-" + name`` unless given; only
    NetVLAD, the paper's, has ``""``, so that its run ids read as the paper's.
    ``needs_centroids``: its runs start from k-means centroids, which the trainer hands to the
    module's ``init_from_centroids(centroids [K,C], descriptors [N,C])``; otherwise they have
    none.
    """

    name: str
    label: str  # as tables print it: NetVLAD, GeM
    build: str | Callable[..., Any]
    needs_centroids: bool
    arguments: tuple[str, ...] = ("channels",)
    options: tuple[tuple[str, Any], ...] = field(default=())
    suffix: str | None = None  # None: "-" + name

    def __post_init__(self) -> None:
        _check_arguments("aggregator", self.name, self.arguments, AGGREGATOR_ARGUMENTS)
        if self.suffix is None:
            object.__setattr__(self, "suffix", f"-{self.name}")

    def instantiate(self, channels: int, num_clusters: int, height: int, width: int) -> Any:
        values = {"channels": channels, "num_clusters": num_clusters, "height": height,
                  "width": width}  # fmt: skip
        args = [values[a] for a in self.arguments]
        return self.constructor()(*args, **dict(self.options))

    def constructor(self) -> Callable[..., Any]:
        return _resolve(self.build, "aggregator", self.name)


AGGREGATORS: dict[str, AggregatorSpec] = {}
DEFAULT_AGGREGATION = "netvlad"


def register_aggregator(spec: AggregatorSpec) -> AggregatorSpec:
    """Add an aggregator; its name must be new and a lowercase word, its run-id suffix new."""
    _check_new_name(spec.name, AGGREGATORS, "aggregator", "AGGREGATORS")
    if spec.suffix and not re.fullmatch(f"-{NAME}", spec.suffix):
        raise InputError(
            f"aggregator {spec.name}: suffix={spec.suffix!r}; expected '-' and lowercase letters "
            "and digits (run ids are split at '-')"
        )
    taken = {other.suffix: other.name for other in AGGREGATORS.values()}
    if spec.suffix in taken:
        raise InputError(
            f"aggregator {spec.name}: suffix={spec.suffix!r} marks the run ids of "
            f"{taken[spec.suffix]!r} already; expected a suffix of its own"
        )
    AGGREGATORS[spec.name] = spec
    return spec


def aggregator_spec(name: str) -> AggregatorSpec:
    if name not in AGGREGATORS:
        raise InputError(f"aggregation={name!r}: expected one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[name]


def needs_centroids(aggregation: str) -> bool:
    """Whether the aggregator starts from k-means centroids (NetVLAD does; GeM has none)."""
    return aggregator_spec(aggregation).needs_centroids


def pool_pattern() -> str:
    """The regex of a run id's aggregator suffix (``{pool}`` in icsa.spec.RUN_ID):
    ``(-gem|-mixvpr|-boq)?`` for the built-ins. Read when used: a plugin may register after
    this module is imported."""
    return f"({'|'.join(s.suffix for s in AGGREGATORS.values() if s.suffix)})?"


def aggregation_of_suffix(suffix: str) -> str:
    """The aggregator whose run ids carry ``suffix`` (``""`` → netvlad)."""
    for spec in AGGREGATORS.values():
        if spec.suffix == suffix:
            return spec.name
    suffixes = [s.suffix for s in AGGREGATORS.values()]
    raise InputError(f"run-id suffix {suffix!r}: expected one of {suffixes}")


# ---- labels ----------------------------------------------------------------------------------


def network_label(backbone: str, attention: str, aggregation: str = DEFAULT_AGGREGATION) -> str:
    """'VGG16+ICSA' as the paper writes it; 'VGG16' for no attention; ' (GeM)' appended when the
    aggregator is not the paper's NetVLAD."""
    name = backbone_spec(backbone).label
    label = name if attention == "none" else f"{name}+{attention_spec(attention).label}"
    if aggregator_spec(aggregation).name != DEFAULT_AGGREGATION:
        label += f" ({aggregator_spec(aggregation).label})"
    return label


# Table 2 also measures ICSA folded into the last conv layer (icsa.models.folding): no module left.
FOLDED = "icsa-folded"


def module_label(name: str) -> str:
    """How Table 2 names a measured module: the registry label, or 'ICSA (folded)'."""
    return "ICSA (folded)" if name == FOLDED else attention_spec(name).label


# ---- shared ----------------------------------------------------------------------------------


def _check_new_name(name: str, registry: dict, kind: str, registry_name: str) -> None:
    if not (isinstance(name, str) and re.fullmatch(NAME, name)):
        raise InputError(f"{kind} name {name!r}: expected lowercase letters and digits only")
    if name in registry:
        raise InputError(
            f"{kind} {name!r} is registered already in icsa.registry.{registry_name}; expected a "
            "name of its own"
        )


def _check_arguments(kind: str, name: str, arguments: tuple[str, ...], known: tuple) -> None:
    unknown = [a for a in arguments if a not in known]
    if unknown:
        raise InputError(f"{kind} {name}: arguments {unknown}; expected some of {known}")


def _resolve(build: str | Callable[..., Any], kind: str, name: str) -> Callable[..., Any]:
    """``build`` itself, or the object its import path ``"package.module:Name"`` names."""
    if callable(build):
        return build
    module, _, attr = build.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise InputError(
            f"{kind} {name}: build={build!r} cannot be imported ({err}); "
            "expected 'package.module:Name'"
        ) from err


# The built-in entries register themselves (they need the classes above, hence the import here).
import icsa.registry_entries  # noqa: E402, F401, I001
