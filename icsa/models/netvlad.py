"""NetVLAD layer (Arandjelović et al., "NetVLAD: CNN architecture for weakly supervised place
recognition", CVPR 2016), following pytorch-NetVlad's ``vladv1`` setting.

Per image: each local descriptor x_i ∈ R^C is L2-normalised ("preL2"); a 1×1 conv without
bias gives soft-assignment logits, softmax over the K clusters gives a_k(x_i);
V_k = Σ_i a_k(x_i)(x_i − c_k); each V_k is L2-normalised (intra-normalisation), then the
flattened K·C vector is L2-normalised.

``init_from_centroids`` sets the conv to α·ĉ_k with α = −ln(0.01) / mean(top1 − top2), the
mean gap between the largest and second largest dot products of L2-normalised descriptors with
the L2-normalised centroids (so that the soft assignment starts ≈ hard, as in the paper).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from icsa.errors import InputError


def netvlad_alpha(centroids: np.ndarray, descriptors: np.ndarray) -> float:
    """α = −ln(0.01) / mean over descriptors of (top1 − top2) of ĉ·x̂ (both L2-normalised)."""
    c_hat = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    x_hat = descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)
    dots = np.sort(x_hat @ c_hat.T, axis=1)  # [N,K], ascending per descriptor
    gap = float(np.mean(dots[:, -1] - dots[:, -2]))
    if not gap > 0:
        raise InputError(
            f"NetVLAD init: mean top1−top2 gap of descriptor/centroid dot products is {gap}; "
            "expected > 0 (distinct centroids)"
        )
    return -math.log(0.01) / gap


class NetVLAD(nn.Module):
    """NetVLAD pooling: [B,C,H,W] local features → [B,K·C] L2-normalised descriptor.

    Args:
        num_clusters: K.
        dim: C, the local descriptor size.
        normalize_input: L2-normalise each local descriptor first (the paper's setting).
    """

    def __init__(self, num_clusters: int, dim: int, normalize_input: bool = True) -> None:
        super().__init__()
        if num_clusters < 1 or dim < 1:
            raise InputError(
                f"NetVLAD num_clusters={num_clusters}, dim={dim}: expected positive integers"
            )
        self.num_clusters = int(num_clusters)
        self.dim = int(dim)
        self.normalize_input = normalize_input
        self.alpha = 0.0  # set by init_from_centroids; kept for the record
        self.conv = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=False)
        self.centroids = nn.Parameter(torch.rand(num_clusters, dim))

    @property
    def output_dim(self) -> int:
        return self.num_clusters * self.dim

    @torch.no_grad()
    def init_from_centroids(self, centroids: np.ndarray, descriptors: np.ndarray) -> float:
        """Set centroids and the assignment conv (α·ĉ) from k-means output; returns α."""
        centroids = np.asarray(centroids, dtype=np.float64)
        descriptors = np.asarray(descriptors, dtype=np.float64)
        k, c = self.num_clusters, self.dim
        if centroids.shape != (k, c):
            raise InputError(f"NetVLAD centroids shape {centroids.shape}: expected ({k}, {c})")
        if descriptors.ndim != 2 or descriptors.shape[1] != c or len(descriptors) == 0:
            raise InputError(f"NetVLAD descriptors shape {descriptors.shape}: expected (N, {c})")
        if k < 2:
            raise InputError("NetVLAD init: num_clusters=1; the α rule needs at least 2")
        self.alpha = netvlad_alpha(centroids, descriptors)
        c_hat = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        weight = torch.from_numpy(self.alpha * c_hat).to(self.conv.weight)
        self.conv.weight.copy_(weight[:, :, None, None])
        self.centroids.copy_(torch.from_numpy(centroids).to(self.centroids))
        return self.alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,H,W]
        b, c = x.shape[:2]
        if self.normalize_input:
            x = F.normalize(x, p=2, dim=1)  # per local descriptor
        assign = F.softmax(self.conv(x).reshape(b, self.num_clusters, -1), dim=1)  # [B,K,HW]
        flat = x.reshape(b, c, -1)  # [B,C,HW]
        # Σ_i a_ik (x_i − c_k) = Σ_i a_ik x_i − c_k Σ_i a_ik, without a [B,K,C,HW] tensor.
        vlad = torch.bmm(assign, flat.transpose(1, 2))  # [B,K,C]
        vlad = vlad - assign.sum(dim=2, keepdim=True) * self.centroids.unsqueeze(0)
        vlad = F.normalize(vlad, p=2, dim=2)  # intra-normalisation
        return F.normalize(vlad.reshape(b, -1), p=2, dim=1)  # [B,K*C]
