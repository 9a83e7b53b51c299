"""Fold a trained ICSA (or ``ch``) into the last conv layer for inference, at zero cost.

VGG16 and AlexNet are cut right after their last conv, *before* its ReLU, so the features are
y = W * x + b and the channel half gives a_c · y = (a_c W) * x + a_c b: scaling the conv's
output channels is exact. The spatial half multiplies each location by a_s(h, w); NetVLAD
L2-normalises each local descriptor first, so a *positive* per-location factor changes nothing
and can be dropped (docs/science.md). The folded model has no attention module and gives the same
descriptors. ResNet18 ends with a ReLU after a residual sum, where no such folding is exact.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from icsa.errors import InputError
from icsa.models.independent import ICSA
from icsa.models.model import PlaceModel
from icsa.models.netvlad import NetVLAD

FOLDABLE_BACKBONES = ("vgg16", "alexnet")
FOLDABLE_ATTENTIONS = ("icsa", "ch")


def _last_conv(model: PlaceModel) -> nn.Conv2d:
    last = model.backbone.blocks[-1]
    conv = last[-1] if isinstance(last, nn.Sequential) else last
    if not isinstance(conv, nn.Conv2d):
        raise InputError(f"fold_attention: backbone {model.backbone.name} does not end in a conv")
    return conv


def fold_attention(model: PlaceModel) -> PlaceModel:
    """A new PlaceModel with attention ``none`` and the channel weights folded into the last conv.

    Its ``config`` says attention ``none`` (it *is* such a model, so a checkpoint of it reloads
    with ``build_model(**config)``); ``folded_from`` records the original attention.

    Raises InputError unless the backbone is VGG16/AlexNet, the attention ``icsa``/``ch``, NetVLAD
    normalises its input, and every spatial weight is > 0 (only then is dropping it exact).
    """
    name = model.backbone.name
    attention = model.config.get("attention")
    if name not in FOLDABLE_BACKBONES:
        raise InputError(
            f"fold_attention: backbone={name!r}; expected one of {FOLDABLE_BACKBONES} "
            "(cut before a ReLU; ResNet18's cut ends in ReLU + residual, folding is not exact)"
        )
    if attention not in FOLDABLE_ATTENTIONS or not isinstance(model.attention, ICSA):
        raise InputError(
            f"fold_attention: attention={attention!r}; expected one of {FOLDABLE_ATTENTIONS}"
        )
    if not isinstance(model.pool, NetVLAD):
        raise InputError(
            f"fold_attention: aggregation={model.aggregation!r}; expected netvlad (GeM does not "
            "normalise each local descriptor, so the spatial half cannot be dropped)"
        )
    if not model.netvlad.normalize_input:
        raise InputError("fold_attention: NetVLAD normalize_input=False; the spatial half counts")
    spatial = model.attention.spatial_weight
    spatial = None if spatial is None else spatial.detach()
    if spatial is not None and not bool((spatial > 0).all()):
        raise InputError(
            f"fold_attention: {int((spatial <= 0).sum())} spatial weights are <= 0 (min "
            f"{float(spatial.min()):.4g}); expected all > 0 for the spatial half to be inert"
        )
    folded = PlaceModel(
        copy.deepcopy(model.backbone),
        nn.Identity(),
        copy.deepcopy(model.netvlad),
        {**model.config, "attention": "none"},  # build_model(**config) rebuilds it exactly
        model.feature_shape,
    )
    folded.folded_from = attention  # for the record; not in config
    conv = _last_conv(folded)
    channel = model.attention.channel_weight
    if channel is not None:
        with torch.no_grad():
            scale = channel.detach().reshape(-1).to(conv.weight)  # [C]
            conv.weight.mul_(scale[:, None, None, None])  # scale output channels
            if conv.bias is not None:
                conv.bias.mul_(scale)
    folded.train(model.training)
    return folded
