"""Backbones as blocks: VGG16, ResNet18/50 and AlexNet cut from torchvision, and the DINOv2 ViTs.

VGG16 is cut after conv5_3 *before* its ReLU and pool5 (stride 16: 480×640 → 512×30×40), AlexNet
likewise before its last ReLU and pool, ResNet18 after layer4 (docs/science.md, NetVLAD's setting).
Each backbone is five blocks; "lowest trained block" k trains blocks k…last and freezes the rest.
Frozen blocks stay in eval mode even under ``model.train()``, so that the frozen prefix is a fixed
function of the image (the training loop caches it; frozen BatchNorm must not update its stats).

The torchvision model is first built on the meta device (no memory, no init cost), cut, and only
then materialised: randomly (seeded) for ``weights="none"``, or from a state dict. A registry
entry with a ``build`` (the DINOv2 ViTs: icsa/models/vit.py) makes its blocks itself from the
state dict read here; its ``weights="imagenet"`` is its official checkpoint, read from torch.hub's
cache and never downloaded (:func:`hub_checkpoint`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision
from torch import nn

from icsa.errors import InputError
from icsa.registry import BACKBONES, BackboneSpec, backbone_spec, check_block

__all__ = [
    "BACKBONES",
    "Backbone",
    "build_backbone",
    "feature_shape_for",
    "hub_checkpoint",
    "weights_name",
]

# The registry's entries say how each torchvision model is cut (icsa.registry.BackboneSpec).
_CUT = re.compile(r"^(?P<child>[a-z_0-9]+)(\[(?P<start>\d+):(?P<stop>\d+)\])?$")


def parse_lowest_trained_block(value: str | int | None, backbone: str) -> int | None:
    """``"none"``/None → None (nothing trained); ``"k"``/k → k in 1…num_blocks of ``backbone``
    (icsa.registry.check_block)."""
    block = check_block(backbone, value)
    return None if block == "none" else int(block)


def _cut_part(full: nn.Module, cut: str) -> nn.Module:
    """``"features[0:5]"`` → that slice of a Sequential child; ``"layer1"`` → the child."""
    match = _CUT.match(cut)
    if match is None or not hasattr(full, match["child"]):
        raise InputError(f"backbone cut {cut!r}: expected 'child' or 'child[a:b]' of the model")
    part = getattr(full, match["child"])
    return part if match["start"] is None else part[int(match["start"]) : int(match["stop"])]


def _cut(spec: BackboneSpec, full: nn.Module) -> list[nn.Module]:
    """The blocks of a full torchvision model (modules shared, not copied)."""
    blocks = []
    for block in spec.blocks:
        parts = [_cut_part(full, cut) for cut in block]
        blocks.append(parts[0] if len(parts) == 1 else nn.Sequential(*parts))
    return blocks


class Backbone(nn.Module):
    """A backbone as sequential blocks (five for the CNNs); ``forward`` runs them all.

    Attributes: ``name``, ``out_channels``, ``stride`` (nominal), ``num_blocks``, ``blocks``
    (block i+1 = ``blocks[i]``) and ``lowest_trained_block`` (int or None).
    """

    def __init__(self, name: str, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.name = name
        self.out_channels = backbone_spec(name).out_channels
        self.stride = backbone_spec(name).stride
        self.blocks = nn.ModuleList(blocks)
        self.num_blocks = len(blocks)
        self.lowest_trained_block: int | None = None
        self.set_lowest_trained_block(None)

    @property
    def num_frozen(self) -> int:
        """How many leading blocks are frozen (all of them for ``none``)."""
        k = self.lowest_trained_block
        return self.num_blocks if k is None else k - 1

    def set_lowest_trained_block(self, value: str | int | None) -> None:
        """Let blocks k…last require grad and freeze (and put in eval) everything below."""
        self.lowest_trained_block = parse_lowest_trained_block(value, self.name)
        for i, block in enumerate(self.blocks):
            for p in block.parameters():
                p.requires_grad_(i >= self.num_frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        # Frozen blocks are a fixed function: BatchNorm keeps its running stats (eval mode).
        for block in self.blocks[: self.num_frozen]:
            block.eval()
        return self

    def forward_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Run blocks[start:stop] (0-based) on x."""
        for block in self.blocks[start:stop]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B,3,H,W] -> [B,C,h,w]
        return self.forward_blocks(x, 0, self.num_blocks)


def _meta_blocks(name: str) -> tuple[nn.Module, list[nn.Module]]:
    spec = backbone_spec(name)
    with torch.device("meta"):
        full = getattr(torchvision.models, spec.torchvision)(weights=None)
    return full, _cut(spec, full)


def _init_random(name: str, backbone: nn.Module, seed: int) -> None:
    """Torchvision's own init scheme for the kept layers, from a private seeded generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in backbone.modules():
            if backbone_spec(name).random_init == "default":
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()  # e.g. AlexNet: PyTorch's default init
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def hub_checkpoint(name: str) -> Path:
    """Where ``weights="imagenet"`` of a build backbone must be: torch.hub's checkpoint cache
    ($TORCH_HOME/hub/checkpoints, as ``torch.hub.load_state_dict_from_url`` would put it)."""
    url = backbone_spec(name).weights_url
    if not url:
        raise InputError(f"weights='imagenet' for {name}: its registry entry names no checkpoint")
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _hub_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The official checkpoint from torch.hub's cache only: tests and jobs never download."""
    path = hub_checkpoint(name)
    if not path.is_file():
        url = backbone_spec(name).weights_url
        raise InputError(
            f"weights='imagenet' for {name}: expected the file {path} (nothing is downloaded); "
            f"get it with: mkdir -p {path.parent} && curl -L -o {path} {url} (or set "
            "TORCH_HOME to the folder whose hub/checkpoints holds it)"
        )
    return _file_state_dict(str(path))


def _imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights through torchvision's weights API (cache under $TORCH_HOME/hub)."""
    weights = getattr(torchvision.models, backbone_spec(name).imagenet_weights).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, map_location="cpu", weights_only=True)
    except OSError as err:  # no network and nothing cached
        home = os.environ.get("TORCH_HOME", "~/.cache/torch")
        raise InputError(
            f"weights='imagenet' for {name}: could not load {weights.url} ({err}); expected the "
            f"file {Path(weights.url).name} in {home}/hub/checkpoints"
        ) from err


def _file_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise InputError(
            f"weights={path!r}: expected 'none', 'imagenet' or the path of an existing "
            "state dict file (the torchvision model's, or a ViT's in DINOv2's or timm's keys)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise InputError(f"weights file {path}: expected a state dict, found {type(state)}")
    return state


def _load_into(name: str, full: nn.Module, state: dict, source: str) -> None:
    """Load a full-model state dict into the meta model; dropped parts (classifier) optional."""
    try:
        result = full.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as err:  # shape mismatch
        raise InputError(f"weights {source}: does not fit torchvision {name}: {err}") from err
    dropped = backbone_spec(name).dropped_prefixes
    missing = [k for k in result.missing_keys if not k.startswith(dropped)]
    if missing or result.unexpected_keys:
        raise InputError(
            f"weights {source}: keys do not match torchvision {name}: missing "
            f"{missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def weights_name(weights: str | os.PathLike | None) -> str:
    """``weights`` as a string: ``None`` means ``"none"``; anything else not str/path is bad."""
    if weights is None:
        return "none"
    if not isinstance(weights, (str, os.PathLike)):
        raise InputError(
            f"weights={weights!r}: expected 'none' (random init), 'imagenet' or a path to a "
            "state dict (None is taken as 'none')"
        )
    return os.fspath(weights)


def build_backbone(
    name: str,
    lowest_trained_block: str | int | None = "none",
    weights: str | os.PathLike | None = "none",
    init_seed: int = 0,
) -> Backbone:
    """Build a backbone (a cut torchvision model, or a ``build`` entry's blocks).

    Args:
        name: one of ``BACKBONES``.
        lowest_trained_block: ``"none"`` or 1…num_blocks; blocks from it on require grad.
        weights: ``"none"`` (random init from ``init_seed``, deterministic), ``"imagenet"``
            (torchvision weights API; honours ``TORCH_HOME``; for a ViT the DINOv2 checkpoint
            in torch.hub's cache, :func:`hub_checkpoint`) or a path to a state dict of the
            full torchvision model (the classifier may be left out) or of the ViT (DINOv2's
            or timm's key names).
        init_seed: seed of the random init for ``weights="none"`` (also ``weights=None``).
    """
    weights = weights_name(weights)
    spec = backbone_spec(name)
    if spec.build is not None:
        state = None
        if weights != "none":
            state = _hub_state_dict(name) if weights == "imagenet" else _file_state_dict(weights)
        backbone = Backbone(name, spec.constructor()(spec, state, init_seed))
        if any(t.is_meta for t in _tensors(backbone)):
            raise InputError(f"weights {weights}: some backbone tensors were not in the file")
        backbone.set_lowest_trained_block(lowest_trained_block)
        return backbone
    full, blocks = _meta_blocks(name)
    backbone = Backbone(name, blocks)
    if weights == "none":
        backbone.to_empty(device="cpu")
        _init_random(name, backbone, init_seed)
    else:
        state = _imagenet_state_dict(name) if weights == "imagenet" else _file_state_dict(weights)
        _load_into(name, full, state, "imagenet" if weights == "imagenet" else weights)
        # BN's num_batches_tracked etc. may still be meta if the file lacked buffers.
        if any(t.is_meta for t in _tensors(backbone)):
            raise InputError(f"weights {weights}: some backbone tensors were not in the file")
    backbone.set_lowest_trained_block(lowest_trained_block)
    return backbone


def _tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def feature_shape_for(name: str, image_size: tuple[int, int]) -> tuple[int, int, int]:
    """(C, h, w) of the cut backbone's output for an image of ``image_size`` = (H, W).

    Runs the real module graph on the meta device, so the arithmetic is torch's own.
    """
    spec = backbone_spec(name)
    if spec.build is None:
        _, blocks = _meta_blocks(name)
    else:
        with torch.device("meta"):
            blocks = spec.constructor()(spec, None, 0)
    x = torch.empty(1, 3, int(image_size[0]), int(image_size[1]), device="meta")
    for block in blocks:
        x = block(x)
    return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
