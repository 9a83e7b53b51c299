"""Backbones, attention modules, NetVLAD and the full place-recognition model.

Interfaces are fixed in docs/architecture.md ("Models"); the science in docs/science.md.
"""

from icsa.models.attention import ATTENTIONS, build_attention, parameter_size_kb
from icsa.models.backbones import BACKBONES, Backbone, build_backbone, feature_shape_for
from icsa.models.classic import CBAM, SqueezeExcite
from icsa.models.folding import fold_attention
from icsa.models.independent import (
    ICSA,
    IndependentAttention,
    IndependentChannelAttention,
    IndependentSpatialAttention,
)
from icsa.models.model import PlaceModel, build_model
from icsa.models.netvlad import NetVLAD, netvlad_alpha

__all__ = [
    "ATTENTIONS",
    "BACKBONES",
    "CBAM",
    "ICSA",
    "Backbone",
    "IndependentAttention",
    "IndependentChannelAttention",
    "IndependentSpatialAttention",
    "NetVLAD",
    "PlaceModel",
    "SqueezeExcite",
    "build_attention",
    "build_backbone",
    "build_model",
    "feature_shape_for",
    "fold_attention",
    "netvlad_alpha",
    "parameter_size_kb",
]
