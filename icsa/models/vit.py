"""DINOv2 ViTs as backbones: the patch tokens as a C×(H/14)×(W/14) map, in blocks.

The implementation is timm's (``timm.create_model("vit_small_patch14_dinov2")``): a maintained
package whose model is built locally with no network access, whose checkpoint filter converts the
official DINOv2 checkpoints (torch.hub's ``dinov2_vits14`` key names) to its own, and whose
``dynamic_img_size`` interpolates the positional embedding to any multiple of the patch size.
torch.hub's DINOv2 code would have to be downloaded (``torch.hub.load`` fetches the repository) or
vendored. One difference from torch.hub's code: timm interpolates the positional embedding
bicubically *with* antialiasing, DINOv2's own code without, so pretrained features at image sizes
other than 518×518 differ slightly from torch.hub's.

Blocks (the registry's ``vit_blocks``): block 1 is the patch embedding, positional embedding and
CLS token plus transformer block 1; block i is transformer block i; the last one also applies the
final norm and turns the patch tokens (CLS and register tokens dropped) into the map. Between
blocks the tokens travel as a map too, ``[B, C, 1 + h, w]``: row 0 holds the prefix tokens (CLS,
registers) left-aligned and zero-padded, rows 1…h the patch grid. So the frozen prefix the
training loop caches is a plain tensor that carries its own grid size, and the models' split
``frozen_prefix`` / ``forward_from_prefix`` is exact (the packing only moves values).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from icsa.errors import InputError
from icsa.registry import BackboneSpec

_SLICE = re.compile(r"^blocks\[(\d+):(\d+)\]$")


def _pack(tokens: torch.Tensor, prefix: int, h: int, w: int) -> torch.Tensor:
    """[B, prefix + h·w, C] tokens → [B, C, 1 + h, w] (prefix tokens in row 0)."""
    if prefix > w:
        raise InputError(f"ViT grid width {w}: expected at least {prefix} patches per row")
    b, _, c = tokens.shape
    head = torch.cat([tokens[:, :prefix], tokens.new_zeros(b, w - prefix, c)], dim=1)
    rows = torch.cat([head, tokens[:, prefix:]], dim=1)  # [B, (1+h)·w, C]
    return rows.transpose(1, 2).reshape(b, c, 1 + h, w)


def _unpack(packed: torch.Tensor, prefix: int) -> torch.Tensor:
    """Inverse of :func:`_pack`: [B, C, 1 + h, w] → [B, prefix + h·w, C]."""
    w = packed.shape[3]
    rows = packed.flatten(2).transpose(1, 2)
    return torch.cat([rows[:, :prefix], rows[:, w:]], dim=1)


class _Embed(nn.Module):
    """Patch embedding + CLS/register tokens + positional embedding (timm's own ``_pos_embed``,
    interpolated to the image's grid), sharing the ViT's modules and parameters."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self._timm_pos_embed = VisionTransformer._pos_embed
        for attr in ("patch_embed", "cls_token", "reg_token", "pos_embed", "pos_drop",
                     "patch_drop", "norm_pre"):  # fmt: skip
            setattr(self, attr, getattr(vit, attr))
        self.dynamic_img_size = vit.dynamic_img_size
        self.no_embed_class = vit.no_embed_class
        self.num_prefix_tokens = vit.num_prefix_tokens

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.patch_embed(images)  # [B, h, w, C] (dynamic_img_size)
        h, w = x.shape[1], x.shape[2]
        x = self._timm_pos_embed(self, x)
        return self.norm_pre(self.patch_drop(x)), h, w


class ViTBlock(nn.Module):
    """One backbone block: [embedding +] transformer blocks [+ final norm → patch map]."""

    def __init__(self, embed: _Embed | None, layers: list[nn.Module], norm: nn.Module | None,
                 prefix: int) -> None:  # fmt: skip
        super().__init__()
        self.embed = embed
        self.layers = nn.Sequential(*layers)
        self.norm = norm
        self.prefix = prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            tokens, h, w = self.embed(x)  # x: images [B, 3, H, W]
        else:
            h, w = x.shape[2] - 1, x.shape[3]
            tokens = _unpack(x, self.prefix)
        tokens = self.layers(tokens)
        if self.norm is None:
            return _pack(tokens, self.prefix, h, w)
        patches = self.norm(tokens)[:, self.prefix :]  # CLS and register tokens dropped
        return patches.transpose(1, 2).reshape(patches.shape[0], -1, h, w)  # [B, C, h, w]


def _timm_vit(spec: BackboneSpec) -> nn.Module:
    import timm

    options: dict[str, Any] = dict(spec.options)
    name = options.pop("model")
    # dynamic_img_size: the positional embedding (518×518's 37×37 grid, as in the checkpoints)
    # is interpolated to each image's grid at run time, so one model serves every image size.
    return timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True,
                             **options)  # fmt: skip


def _load(spec: BackboneSpec, vit: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load official DINOv2 or timm keys (timm's filter converts the former) into ``vit``."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = checkpoint_filter_fn(dict(state), vit)
    try:
        result = vit.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as err:  # shape mismatch
        raise InputError(f"weights for {spec.name}: do not fit {spec.label}: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"weights for {spec.name}: keys do not match {spec.label} (DINOv2 or timm key names "
            f"expected): missing {result.missing_keys[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}"
        )


def build_vit(spec: BackboneSpec, state: dict[str, torch.Tensor] | None,
              init_seed: int) -> list[nn.Module]:  # fmt: skip
    """The blocks of ``spec``'s ViT: timm's random init from ``init_seed`` (state None), or
    ``state`` loaded. Built on the current default device (``meta`` for shapes and plans)."""
    if state is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            vit = _timm_vit(spec)
    else:
        with torch.device("meta"):
            vit = _timm_vit(spec)
        _load(spec, vit, state)
    if len(vit.blocks) != spec.num_blocks:
        raise InputError(
            f"backbone {spec.name}: {len(vit.blocks)} transformer blocks; expected "
            f"{spec.num_blocks} as its registry entry names"
        )
    blocks = []
    for cuts in spec.blocks:
        layers = []
        for cut in cuts:
            match = _SLICE.match(cut)
            if match:
                layers.extend(vit.blocks[int(match[1]) : int(match[2])])
            elif cut not in ("patch_embed", "norm"):
                raise InputError(
                    f"backbone {spec.name}: block part {cut!r}; expected patch_embed, "
                    "blocks[a:b] or norm"
                )
        embed = _Embed(vit) if "patch_embed" in cuts else None
        norm = vit.norm if "norm" in cuts else None
        blocks.append(ViTBlock(embed, layers, norm, vit.num_prefix_tokens))
    return blocks
