"""Input-dependent attention baselines of the paper's Table 1/2: SENet and CBAM.

- :class:`SqueezeExcite` — Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018):
  g(x) = sigmoid(W2 relu(W1 GAP(x))), reduction 16, no bias (Eq. 5 of the ICSA paper).
  At C = 512: 2·512·32 = 32768 parameters = 128.0 kB.
- :class:`CBAM` — Woo et al., "CBAM: Convolutional Block Attention Module" (ECCV 2018):
  a channel gate (shared MLP, reduction 8, no bias, over avg- and max-pooled features) followed
  by a spatial gate (a 7×7 conv over the channel-wise [mean, max] maps, with bias).
  At C = 512: 2·512·64 + 2·49 + 1 = 65635 parameters = 256.4 kB, the paper's figure.

The spatial gate scales each location by a positive number, which NetVLAD's per-descriptor
L2 normalisation removes: it is inert in this pipeline (docs/science.md; tested).
"""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """SE channel attention (reduction 16, no bias); works for any input H×W.

    Args:
        channels: C of the feature map.
        reduction: hidden width is ``channels // reduction``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,H,W] -> gate [B,C,1,1] -> [B,C,H,W]
        gate = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class CBAMChannelGate(nn.Module):
    """CBAM's channel gate: sigmoid(MLP(avgpool x) + MLP(maxpool x)), MLP without bias."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,H,W] -> gate [B,C,1,1]
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class CBAMSpatialGate(nn.Module):
    """CBAM's spatial gate: sigmoid(conv7×7([mean_c x, max_c x])) per location."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,H,W] -> pooled [B,2,H,W] -> gate [B,1,H,W]
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """CBAM: channel gate then spatial gate (Woo et al. 2018); works for any input H×W.

    Args:
        channels: C of the feature map.
        reduction: channel-MLP reduction (8, as sized in the paper's Table 2).
        kernel_size: spatial conv kernel (7).
    """

    def __init__(self, channels: int, reduction: int = 8, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel_gate = CBAMChannelGate(channels, reduction)
        self.spatial_gate = CBAMSpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,H,W] -> [B,C,H,W]
        return self.spatial_gate(self.channel_gate(x))
