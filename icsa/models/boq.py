"""BoQ, a token aggregator with learned queries (Ali-bey, Chaib-draa and Giguère, "BoQ: A Place
is Worth a Bag of Learnable Queries", CVPR 2024; reference code:
github.com/amaralibey/Bag-of-Queries, ``src/boq.py``).

The C×h×w map is projected to ``dim`` channels by a 3×3 convolution, read as h·w tokens and
layer-normalised. Each of ``layers`` blocks then

1. updates the tokens with a transformer encoder layer (self-attention over the tokens, MLP);
2. takes its own ``queries`` learned vectors, lets them attend to each other (residual, then
   LayerNorm: the reference's stabiliser) and
3. lets them attend to the tokens (cross-attention, then LayerNorm): ``queries`` outputs.

The outputs of all blocks (layers·queries vectors of ``dim``) are mixed by a Linear over the
query axis into ``rows`` vectors, flattened and L2-normalised: D = dim · rows (512 with the
registry's options; the paper uses 512 · 32 on ResNet-50). Tokens may be any number, so one
module serves feature maps of any h×w. Dropout is 0: the module is deterministic given its
weights.

The per-token LayerNorm follows a 3×3 convolution with a bias, which mixes neighbouring
locations, so a per-location weight in front (ICSA's spatial half, ``sp``) is not normalised
away: it gets a gradient, unlike under NetVLAD (docs/science.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icsa.errors import InputError


class QueryBlock(nn.Module):
    """Tokens [B,N,dim] → (updated tokens [B,N,dim], query outputs [B,queries,dim])."""

    def __init__(self, dim: int, queries: int, heads: int) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=0.0, batch_first=True
        )
        self.queries = nn.Parameter(torch.randn(queries, dim))
        self.query_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.query_norm = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.encoder(tokens)  # [B,N,dim]
        q = self.queries.expand(tokens.shape[0], -1, -1)  # [B,Q,dim]
        q = self.query_norm(q + self.query_attn(q, q, q, need_weights=False)[0])
        out = self.cross_attn(q, tokens, tokens, need_weights=False)[0]  # [B,Q,dim]
        return tokens, self.out_norm(out)


class BoQ(nn.Module):
    """[B,C,h,w] local features → [B, dim·rows] L2-normalised descriptor.

    Args:
        channels: C of the feature map.
        dim: channels after the input projection, the tokens' width (the paper: 512).
        queries: learned queries per block (the paper: 64).
        layers: number of blocks (the paper: 2).
        rows: vectors the query outputs are mixed into (the paper: 32).
        heads: attention heads; None → dim // 64 (at least 1), as in the reference.
    """

    def __init__(
        self,
        channels: int,
        dim: int = 128,
        queries: int = 16,
        layers: int = 2,
        rows: int = 4,
        heads: int | None = None,
    ) -> None:
        super().__init__()
        heads = max(1, dim // 64) if heads is None else heads
        sizes = {"channels": channels, "dim": dim, "queries": queries, "layers": layers,
                 "rows": rows, "heads": heads}  # fmt: skip
        if min(sizes.values()) < 1 or dim % heads:
            raise InputError(f"BoQ {sizes}: expected positive sizes and dim divisible by heads")
        self.proj = nn.Conv2d(channels, dim, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(QueryBlock(dim, queries, heads) for _ in range(layers))
        self.mix = nn.Linear(layers * queries, rows)
        self.dim = int(dim) * int(rows)

    @property
    def output_dim(self) -> int:
        return self.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B,C,h,w] -> tokens [B,h·w,dim]
        tokens = self.norm(self.proj(x).flatten(2).transpose(1, 2))
        outs = []
        for block in self.blocks:
            tokens, out = block(tokens)
            outs.append(out)
        mixed = self.mix(torch.cat(outs, dim=1).transpose(1, 2))  # [B,dim,rows]
        return F.normalize(mixed.flatten(1), p=2, dim=1)  # [B,D]

    def extra_repr(self) -> str:
        return f"output_dim={self.dim}"
