"""The registries of backbones and attention modules: the one place their names live (no torch).

Everything else reads names, labels and facts from here: the model builders
(:mod:`icsa.models`), the workflow's config validation (:mod:`icsa.spec`), k-means' choice of
centroids, the tables' labels and the input-size check. Importing this module does not import
torch, so the Snakefile can validate a config against it at parse time.

Adding an attention module is its class plus one :class:`AttentionSpec` entry; adding a backbone
is one :class:`BackboneSpec` entry. Code outside the package registers with
:func:`register_attention` / :func:`register_backbone` in a module named under the config's
``plugins:`` (imported before validation, and by every ``icsa`` job through $ICSA_PLUGINS).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from icsa.errors import InputError

# ---- backbones -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneSpec:
    """A torchvision classifier cut at its last conv layer, as a sequence of blocks.

    A block is a tuple of "cuts" into the full torchvision model: ``"features[0:5]"`` is a slice
    of a Sequential child, ``"layer1"`` a named child. Blocks are 1-based in the config ("lowest
    trained block" k trains blocks k…last).
    """

    name: str
    label: str  # as the paper writes it: VGG16
    torchvision: str  # constructor in torchvision.models
    imagenet_weights: str  # weights enum in torchvision.models (IMAGENET1K_V1 is used)
    blocks: tuple[tuple[str, ...], ...]
    out_channels: int
    stride: int  # nominal: 480×640 → 30×40 for 16
    # Smallest image side with a non-empty feature map (torch's arithmetic, pinned by a test).
    min_image_side: int
    # Parts of the full model the cut drops: their keys may be absent from a weights file.
    dropped_prefixes: tuple[str, ...]
    # "kaiming": torchvision's conv/BN init scheme; "default": each layer's reset_parameters().
    random_init: str = "kaiming"

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone; its name must be new and a lowercase word (run ids are built from it)."""
    _check_new_name(spec.name, BACKBONES, "backbone", "BACKBONES")
    if spec.random_init not in ("kaiming", "default"):
        raise InputError(
            f"backbone {spec.name}: random_init={spec.random_init!r}; expected kaiming or default"
        )
    BACKBONES[spec.name] = spec
    return spec


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise InputError(f"backbone={name!r}: expected one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


# ---- attention modules -----------------------------------------------------------------------

SIZE_ARGUMENTS = ("channels", "height", "width")


@dataclass(frozen=True)
class AttentionSpec:
    """An attention module between the backbone and NetVLAD.

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
        unknown = [a for a in self.arguments if a not in SIZE_ARGUMENTS]
        if unknown:
            raise InputError(
                f"attention {self.name}: arguments {unknown}; expected some of {SIZE_ARGUMENTS}"
            )

    def instantiate(self, channels: int, height: int, width: int) -> Any:
        sizes = {"channels": channels, "height": height, "width": width}
        args = [sizes[a] for a in self.arguments]
        return self.constructor()(*args, **dict(self.options))

    def constructor(self) -> Callable[..., Any]:
        if callable(self.build):
            return self.build
        module, _, attr = self.build.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise InputError(
                f"attention {self.name}: build={self.build!r} cannot be imported ({err}); "
                "expected 'package.module:Name'"
            ) from err


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


# How local features become one descriptor (icsa.models.model): NetVLAD, the paper's, or GeM
# (icsa/models/gem.py), where a per-location weight is not normalised away.
AGGREGATIONS: dict[str, str] = {"netvlad": "NetVLAD", "gem": "GeM"}
DEFAULT_AGGREGATION = "netvlad"


def check_aggregation(name: str) -> str:
    if name not in AGGREGATIONS:
        raise InputError(f"aggregation={name!r}: expected one of {', '.join(AGGREGATIONS)}")
    return name


def needs_centroids(aggregation: str) -> bool:
    """Whether the aggregator starts from k-means centroids (NetVLAD does; GeM has none)."""
    return check_aggregation(aggregation) == "netvlad"


def network_label(backbone: str, attention: str, aggregation: str = DEFAULT_AGGREGATION) -> str:
    """'VGG16+ICSA' as the paper writes it; 'VGG16' for no attention; ' (GeM)' appended when the
    aggregator is not the paper's NetVLAD."""
    name = backbone_spec(backbone).label
    label = name if attention == "none" else f"{name}+{attention_spec(attention).label}"
    if check_aggregation(aggregation) != DEFAULT_AGGREGATION:
        label += f" ({AGGREGATIONS[aggregation]})"
    return label


# Table 2 also measures ICSA folded into the last conv layer (icsa.models.folding): no module left.
FOLDED = "icsa-folded"


def module_label(name: str) -> str:
    """How Table 2 names a measured module: the registry label, or 'ICSA (folded)'."""
    return "ICSA (folded)" if name == FOLDED else attention_spec(name).label


# ---- shared ----------------------------------------------------------------------------------


def _check_new_name(name: str, registry: dict, kind: str, registry_name: str) -> None:
    # Run ids join names with "-" and wildcards match [a-z0-9]+ (workflow/Snakefile).
    if not (isinstance(name, str) and name.isascii() and name.isalnum() and name.islower()):
        raise InputError(f"{kind} name {name!r}: expected lowercase letters and digits only")
    if name in registry:
        raise InputError(
            f"{kind} {name!r} is registered already in icsa.registry.{registry_name}; expected a "
            "name of its own"
        )


# The workflow exports the config's `plugins:` here, so that every `icsa` job imports them too.
PLUGINS_ENV = "ICSA_PLUGINS"


def load_plugins_from_env() -> None:
    """Import the comma-separated modules of $ICSA_PLUGINS (none when unset)."""
    load_plugins(m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip())


def _plugin_file(module: str) -> str | None:
    """The file ``module`` is imported from, or None (not found, or not a file)."""
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # noqa: BLE001 — a parent package that fails is reported by the import
        return None
    return spec.origin if spec is not None and spec.has_location else None


def load_plugins(modules: Iterable[str]) -> None:
    """Import modules that register backbones or attention modules (config ``plugins:``).

    Whatever goes wrong inside one is reported naming it (module and file) first: the plugin is
    the user's code, and a traceback through importlib does not say which entry of ``plugins:``
    failed."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 — anything a plugin raises at import is its fault
            file = _plugin_file(module)
            where = f"plugins: {module!r}" + (f" ({file})" if file else "")
            if isinstance(err, InputError):  # a registration it makes, e.g. a name taken
                raise InputError(f"{where}: {err}") from err
            if isinstance(err, ImportError):
                raise InputError(
                    f"{where} cannot be imported ({err}); expected an importable module (on "
                    "PYTHONPATH) that calls icsa.registry.register_attention/register_backbone"
                ) from err
            raise InputError(f"{where} raised {type(err).__name__} at import: {err}") from err


# ---- the built-in entries --------------------------------------------------------------------

_VGG16_CUT = ("features[0:5]", "features[5:10]", "features[10:17]", "features[17:24]",
              "features[24:29]")  # fmt: skip
_ALEXNET_CUT = ("features[0:3]", "features[3:6]", "features[6:8]", "features[8:10]",
                "features[10:11]")  # fmt: skip

for _spec in (
    # VGG16 is cut after conv5_3 before its ReLU and pool5; AlexNet before its last ReLU and pool
    # (README, NetVLAD's setting); ResNet18 after layer4.
    BackboneSpec("vgg16", "VGG16", "vgg16", "VGG16_Weights", tuple((c,) for c in _VGG16_CUT),
                 out_channels=512, stride=16, min_image_side=16, dropped_prefixes=("classifier.",)),
    BackboneSpec("resnet18", "ResNet18", "resnet18", "ResNet18_Weights",
                 (("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",),
                  ("layer4",)),
                 out_channels=512, stride=32, min_image_side=1, dropped_prefixes=("fc.",)),
    # ResNet-50 (issue 15): the same five blocks as ResNet-18, bottleneck layers, 2048 channels.
    BackboneSpec("resnet50", "ResNet50", "resnet50", "ResNet50_Weights",
                 (("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",),
                  ("layer4",)),
                 out_channels=2048, stride=32, min_image_side=1, dropped_prefixes=("fc.",)),
    BackboneSpec("alexnet", "AlexNet", "alexnet", "AlexNet_Weights",
                 tuple((c,) for c in _ALEXNET_CUT), out_channels=256, stride=16,
                 min_image_side=31, dropped_prefixes=("classifier.",), random_init="default"),
):  # fmt: skip
    register_backbone(_spec)

_INDEPENDENT = "icsa.models.independent"
for _spec in (
    AttentionSpec("none", "none", "torch.nn:Identity", identity_at_init=True, arguments=()),
    AttentionSpec("ia", "IA", f"{_INDEPENDENT}:IndependentAttention", identity_at_init=True),
    AttentionSpec("icsa", "ICSA", f"{_INDEPENDENT}:ICSA", identity_at_init=True),
    AttentionSpec("ch", "CH", f"{_INDEPENDENT}:IndependentChannelAttention", identity_at_init=True),
    AttentionSpec("sp", "SP", f"{_INDEPENDENT}:IndependentSpatialAttention", identity_at_init=True),
    AttentionSpec("se", "SENet", "icsa.models.classic:SqueezeExcite", identity_at_init=False,
                  arguments=("channels",), options=(("reduction", 16),)),
    AttentionSpec("cbam", "CBAM", "icsa.models.classic:CBAM", identity_at_init=False,
                  arguments=("channels",), options=(("reduction", 8), ("kernel_size", 7))),
):  # fmt: skip
    register_attention(_spec)
