"""The place-recognition model: backbone → attention → aggregator → descriptor (docs/science.md).

The aggregator is a registry entry (icsa.registry.AggregatorSpec): NetVLAD (K·C, the paper's),
GeM (C; icsa/models/gem.py), MixVPR (icsa/models/mixvpr.py), BoQ (icsa/models/boq.py) or one a
plugin registers.

:class:`PlaceModel` also exposes the split the training loop needs: ``frozen_prefix`` (the
blocks below the lowest trained block, a fixed function that can be cached) and
``forward_from_prefix`` (everything after). ``forward`` is literally their composition, so a
cached prefix gives bit-identical descriptors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from icsa.errors import InputError
from icsa.models.attention import build_attention
from icsa.models.backbones import Backbone, build_backbone, feature_shape_for, weights_name
from icsa.registry import DEFAULT_AGGREGATION, aggregator_spec


def _parse_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError) as err:
        raise InputError(f"image_size={image_size!r}: expected (height, width)") from err
    if h < 1 or w < 1:
        raise InputError(f"image_size={image_size!r}: expected positive (height, width)")
    return h, w


class PlaceModel(nn.Module):
    """Images [B,3,H,W] → L2-normalised descriptors [B, D] (D = K·C for NetVLAD, C for GeM).

    Attributes: ``backbone`` (:class:`Backbone`), ``attention``, ``pool`` (the aggregator, also
    reachable by its registry name, e.g. ``netvlad`` or ``gem``, which is also its key prefix in
    state dicts) and ``config`` (the arguments of :func:`build_model`, enough to rebuild the
    architecture).
    """

    def __init__(
        self,
        backbone: Backbone,
        attention: nn.Module,
        pool: nn.Module,
        config: dict[str, Any],
        feature_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.attention = attention
        self.config = {"aggregation": DEFAULT_AGGREGATION, **config}
        spec = aggregator_spec(self.config["aggregation"])
        self.aggregation = spec.name
        expected = spec.constructor()
        if isinstance(expected, type) and not isinstance(pool, expected):
            raise InputError(
                f"aggregation={self.aggregation!r}: expected a {expected.__name__} module, "
                f"got {type(pool).__name__}"
            )
        if not hasattr(pool, "output_dim"):
            raise InputError(
                f"aggregation={self.aggregation!r}: {type(pool).__name__} has no output_dim; "
                "expected the descriptor size there (icsa.registry.AggregatorSpec)"
            )
        if hasattr(self, self.aggregation):  # e.g. "train" or "attention"
            raise InputError(
                f"aggregation={self.aggregation!r} is an attribute of PlaceModel; expected an "
                "aggregator name that is not"
            )
        # Registered under its own name: NetVLAD checkpoints keep their "netvlad.*" keys.
        self.add_module(self.aggregation, pool)
        self._feature_shape = tuple(feature_shape)
        self.folded_from: str | None = None  # set by icsa.models.fold_attention

    @property
    def pool(self) -> nn.Module:
        return getattr(self, self.aggregation)

    @property
    def descriptor_dim(self) -> int:
        return self.pool.output_dim

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of the local features for the configured image size."""
        return self._feature_shape

    def frozen_prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Output of the frozen blocks (the whole backbone for ``none``; the images for k=1)."""
        return self.backbone.forward_blocks(images, 0, self.backbone.num_frozen)

    def forward_from_prefix(self, prefix: torch.Tensor) -> torch.Tensor:
        """Trained blocks → attention → aggregator, starting from ``frozen_prefix``'s output."""
        bb = self.backbone
        features = bb.forward_blocks(prefix, bb.num_frozen, bb.num_blocks)  # [B,C,h,w]
        return self.pool(self.attention(features))  # [B,D]

    def local_features(self, images: torch.Tensor) -> torch.Tensor:
        """What enters the aggregator: attention(backbone(images)), [B,C,h,w]."""
        return self.attention(self.backbone(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images [B,3,H,W] -> descriptors [B,D]
        return self.forward_from_prefix(self.frozen_prefix(images))


def build_model(
    backbone: str,
    attention: str,
    num_clusters: int,
    image_size: Sequence[int],
    lowest_trained_block: str | int | None = "none",
    weights: str | os.PathLike | None = "none",
    init_seed: int = 0,
    aggregation: str = DEFAULT_AGGREGATION,
) -> PlaceModel:
    """Build backbone + attention + aggregator (a registered one) for images of ``image_size``.

    The attention module is sized for the feature map at ``image_size`` (it adapts to other
    sizes, see :func:`icsa.models.build_attention`). Everything random comes from ``init_seed``
    (the backbone's init depends only on backbone, weights and seed, so k-means centroids made
    with the same seed match). Attention and aggregator always require grad; backbone blocks from
    ``lowest_trained_block`` on do too. ``num_clusters`` is NetVLAD's K (recorded, and passed
    only to aggregators whose spec names it: one ``model:`` section serves them all).
    """
    pool_spec = aggregator_spec(aggregation)
    size = _parse_image_size(image_size)
    weights = weights_name(weights)  # None → "none"; other non-strings: InputError
    net = build_backbone(backbone, lowest_trained_block, weights, init_seed=init_seed)
    try:
        shape = feature_shape_for(backbone, size)
    except RuntimeError as err:  # image smaller than the receptive field
        raise InputError(f"image_size={size}: too small for backbone {backbone}: {err}") from err
    channels, h, w = shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed + 1)
        att = build_attention(attention, channels, h, w)
        pool = pool_spec.instantiate(
            channels=channels, num_clusters=int(num_clusters), height=h, width=w
        )
    config = {
        "backbone": backbone,
        "attention": attention,
        "num_clusters": int(num_clusters),
        "image_size": list(size),
        "lowest_trained_block": str(net.lowest_trained_block or "none"),
        "weights": str(weights),
        "init_seed": int(init_seed),
        "aggregation": aggregation,
    }
    return PlaceModel(net, att, pool, config, shape)
