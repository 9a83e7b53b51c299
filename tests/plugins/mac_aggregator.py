"""A third aggregator from outside the package, as a user adds one: this file on PYTHONPATH,
``plugins: [mac_aggregator]`` and ``mac`` in a table's ``aggregations:``
(tests/test_aggregator_plugin.py).

MAC (maximum activations of convolutions; Tolias, Sicre and Jégou, ICLR 2016): per channel the
largest activation over the map, then the C-vector L2-normalised. Nothing to initialise, so its
runs need no k-means centroids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icsa.registry import AggregatorSpec, register_aggregator


class MAC(nn.Module):
    """[B,C,h,w] local features → [B,C] L2-normalised descriptor."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.output_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.amax(dim=(2, 3)), p=2, dim=1)  # [B,C]


register_aggregator(AggregatorSpec("mac", "MAC", MAC, needs_centroids=False))
