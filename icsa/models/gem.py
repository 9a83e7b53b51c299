"""Generalised-mean (GeM) pooling (Radenović, Tolias and Chum, "Fine-tuning CNN Image Retrieval
with No Human Annotation", TPAMI 2018), the second aggregator beside NetVLAD.

Per image and channel: f_c = (1/|Ω| Σ_i max(x_ic, ε)^p)^(1/p) over the locations i of the map,
then the C-vector is L2-normalised. p is learned (one scalar, initialised to 3 as in the paper);
p = 1 is average pooling, p → ∞ max pooling. The local features enter after a ReLU, as in
Radenović et al., whose backbones end in one (ours are cut before it for NetVLAD, docs/science.md).

Unlike NetVLAD, GeM does not L2-normalise each local descriptor, so a per-location weight
(ICSA's spatial half) changes the descriptor: under GeM spatial attention is not inert.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icsa.errors import InputError

GEM_P_INIT = 3.0
GEM_EPS = 1e-6


class GeM(nn.Module):
    """[B,C,H,W] local features → [B,C] L2-normalised descriptor; ``p`` is a learned scalar."""

    def __init__(self, dim: int, p: float = GEM_P_INIT, eps: float = GEM_EPS) -> None:
        super().__init__()
        if dim < 1 or not p > 0 or not eps > 0:
            raise InputError(f"GeM dim={dim}, p={p}, eps={eps}: expected positive values")
        self.dim = int(dim)
        self.eps = float(eps)
        self.p = nn.Parameter(torch.tensor([float(p)]))

    @property
    def output_dim(self) -> int:
        return self.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,H,W]; the clamp keeps x^p differentiable in p (log 0 otherwise).
        x = F.relu(x).clamp(min=self.eps).pow(self.p)  # [B,C,H,W]
        pooled = x.mean(dim=(2, 3)).pow(1.0 / self.p)  # [B,C]
        return F.normalize(pooled, p=2, dim=1)  # [B,C]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, p={float(self.p.detach()):.3f}, eps={self.eps}"
