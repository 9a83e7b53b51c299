"""MixVPR (Ali-bey, Chaib-draa and Giguère, "MixVPR: Feature Mixing for Visual Place
Recognition", WACV 2023; reference code: github.com/amaralibey/MixVPR,
``models/aggregators/mixvpr.py``), an aggregator that mixes the whole feature map with MLPs.

The C×h×w map is read as C rows of h·w values. ``depth`` Feature-Mixer blocks each add to a row
an MLP of it (LayerNorm over the h·w values, Linear h·w → ratio·h·w, ReLU, Linear back), with
the same weights for every channel. Then a channel projection (Linear C → ``out_channels``,
applied to each location) and a row projection (Linear h·w → ``out_rows``, no bias, as in the
reference) give an ``out_channels`` × ``out_rows`` matrix, flattened and L2-normalised:
D = out_channels · out_rows (512 with the registry's options).

The MLPs' weights belong to locations, so the module is built for one h×w (the feature map at
the configured image size); a map of another size is resized to it bilinearly first, as the
input-independent attention modules resize their weights (icsa/models/independent.py).

Nothing here normalises a location's vector away (the LayerNorm runs over locations, per
channel), so a per-location weight in front (ICSA's spatial half, ``sp``) changes the
descriptor and gets a gradient, unlike under NetVLAD (docs/science.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icsa.errors import InputError


class FeatureMixer(nn.Module):
    """One Feature-Mixer block over rows of ``size`` values: x + MLP(LayerNorm(x))."""

    def __init__(self, size: int, ratio: float) -> None:
        super().__init__()
        hidden = max(1, int(size * ratio))
        self.norm = nn.LayerNorm(size)
        self.expand = nn.Linear(size, hidden)
        self.reduce = nn.Linear(hidden, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,h·w] -> [B,C,h·w]
        return x + self.reduce(F.relu(self.expand(self.norm(x))))


class MixVPR(nn.Module):
    """[B,C,h,w] local features → [B, out_channels·out_rows] L2-normalised descriptor.

    Args:
        channels: C of the feature map.
        height: h the mixer is built for (other maps are resized to it).
        width: w likewise.
        out_channels: the channel projection's size (the paper: 1024).
        out_rows: the row projection's size (the paper: 4).
        depth: number of Feature-Mixer blocks (the paper: 4).
        mlp_ratio: hidden size of a block's MLP over h·w (the paper: 1).
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        out_channels: int = 128,
        out_rows: int = 4,
        depth: int = 4,
        mlp_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        sizes = {"channels": channels, "height": height, "width": width,
                 "out_channels": out_channels, "out_rows": out_rows}  # fmt: skip
        if min(sizes.values()) < 1 or depth < 0 or not mlp_ratio > 0:
            raise InputError(
                f"MixVPR {sizes}, depth={depth}, mlp_ratio={mlp_ratio}: expected positive sizes, "
                "depth >= 0 and mlp_ratio > 0"
            )
        self.size = (int(height), int(width))
        locations = self.size[0] * self.size[1]
        self.mix = nn.Sequential(*(FeatureMixer(locations, mlp_ratio) for _ in range(depth)))
        self.channel_proj = nn.Linear(channels, out_channels)
        self.row_proj = nn.Linear(locations, out_rows, bias=False)
        self.dim = int(out_channels) * int(out_rows)

    @property
    def output_dim(self) -> int:
        return self.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,h,w]; resized to the built-for size when it differs.
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        x = self.mix(x.flatten(2))  # [B,C,h·w]
        x = self.channel_proj(x.transpose(1, 2))  # [B,h·w,out_channels]
        x = self.row_proj(x.transpose(1, 2))  # [B,out_channels,out_rows]
        return F.normalize(x.flatten(1), p=2, dim=1)  # [B,D]

    def extra_repr(self) -> str:
        return f"size={self.size}, output_dim={self.dim}"
