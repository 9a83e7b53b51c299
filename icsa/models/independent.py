"""Input-independent attention: IA and ICSA (Zhang et al., Computer Science 2023, 50(6A), §3.2).

The attention g(x) = A does not depend on the input: IA learns a full C×H×W tensor (Eq. 7),
ICSA factorises it as A = A_channel ⊗ A_spatial with A_channel ∈ R^{C×1×1} and
A_spatial ∈ R^{1×H×W} (Eq. 8). ``ch`` and ``sp`` are the two halves alone (ablations).
All weights start at 1, so an untrained module is the identity.

When an input's H×W differs from the size the module was built for, the spatial weights
(IA's whole tensor, ICSA's and ``sp``'s spatial map) are resized bilinearly to the input's size
instead of failing, so one model serves images of any size.

Note (docs/science.md): NetVLAD L2-normalises every local descriptor, so a positive per-location
scale is inert; the spatial half only matters through its sign.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _resize(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a [..., H, W] weight to ``size`` (a no-op when it already fits)."""
    if tuple(weight.shape[-2:]) == tuple(size):
        return weight
    lead = weight.shape[:-2]
    flat = weight.reshape(1, -1, *weight.shape[-2:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


class IndependentAttention(nn.Module):
    """IA: out = A ⊗ x with a learned A ∈ R^{C×H×W} (init 1); A resized bilinearly if needed."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,h,w] -> [B,C,h,w]
        return x * _resize(self.weight, x.shape[-2:])


class ICSA(nn.Module):
    """ICSA: out = (A_channel ⊗ A_spatial) ⊗ x, channel [C,1,1] and spatial [1,H,W], init 1.

    Args:
        channels: C of the feature map.
        height: H the spatial weights are built for (resized bilinearly to other inputs).
        width: W likewise.
        use_channel: keep the channel half (False gives ``sp``).
        use_spatial: keep the spatial half (False gives ``ch``).
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        use_channel: bool = True,
        use_spatial: bool = True,
    ) -> None:
        super().__init__()
        self.channel_weight = nn.Parameter(torch.ones(channels, 1, 1)) if use_channel else None
        self.spatial_weight = nn.Parameter(torch.ones(1, height, width)) if use_spatial else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,h,w]; channel [C,1,1] and spatial [1,h,w] broadcast over it.
        if self.spatial_weight is None:
            return x * self.channel_weight
        spatial = _resize(self.spatial_weight, x.shape[-2:])
        if self.channel_weight is None:
            return x * spatial
        # One [C,h,w] outer product, then one pass over the batch (not two).
        return x * (self.channel_weight * spatial)


class IndependentChannelAttention(ICSA):
    """``ch``: ICSA's channel half alone (out = A_channel ⊗ x)."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__(channels, height, width, use_channel=True, use_spatial=False)


class IndependentSpatialAttention(ICSA):
    """``sp``: ICSA's spatial half alone (out = A_spatial ⊗ x), resized bilinearly if needed."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__(channels, height, width, use_channel=False, use_spatial=True)
