"""The built-in entries of :mod:`icsa.registry`: the backbones, attention modules and
aggregators the package ships (no torch: modules are named by import path).

Imported by :mod:`icsa.registry` itself; import that, not this.
"""

from __future__ import annotations

from icsa.registry import (
    AggregatorSpec,
    AttentionSpec,
    BackboneSpec,
    register_aggregator,
    register_attention,
    register_backbone,
)

_VGG16_CUT = ("features[0:5]", "features[5:10]", "features[10:17]", "features[17:24]",
              "features[24:29]")  # fmt: skip
_ALEXNET_CUT = ("features[0:3]", "features[3:6]", "features[6:8]", "features[8:10]",
                "features[10:11]")  # fmt: skip

for _spec in (
    # VGG16 is cut after conv5_3 before its ReLU and pool5; AlexNet before its last ReLU and pool
    # (docs/science.md, NetVLAD's setting); ResNet18 after layer4.
    BackboneSpec("vgg16", "VGG16", "vgg16", "VGG16_Weights", tuple((c,) for c in _VGG16_CUT),
                 out_channels=512, stride=16, min_image_side=16, dropped_prefixes=("classifier.",)),
    BackboneSpec("resnet18", "ResNet18", "resnet18", "ResNet18_Weights",
                 (("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",),
                  ("layer4",)),
                 out_channels=512, stride=32, min_image_side=1, dropped_prefixes=("fc.",),
                 batch_norm=True),
    # ResNet-50 (issue 15): the same five blocks as ResNet-18, bottleneck layers, 2048 channels.
    BackboneSpec("resnet50", "ResNet50", "resnet50", "ResNet50_Weights",
                 (("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",),
                  ("layer4",)),
                 out_channels=2048, stride=32, min_image_side=1, dropped_prefixes=("fc.",),
                 batch_norm=True),
    BackboneSpec("alexnet", "AlexNet", "alexnet", "AlexNet_Weights",
                 tuple((c,) for c in _ALEXNET_CUT), out_channels=256, stride=16,
                 min_image_side=31, dropped_prefixes=("classifier.",), random_init="default"),
):  # fmt: skip
    register_backbone(_spec)


def vit_blocks(depth: int) -> tuple[tuple[str, ...], ...]:
    """A ViT's blocks as icsa.models.vit reads them: block 1 is the patch embedding (with the
    positional embedding and the CLS token) and transformer block 1, block i the i-th transformer
    block, the last one also the final norm. So k = 1 trains the patch embedding too, and any
    k trains the final norm."""
    blocks = [(f"blocks[{i}:{i + 1}]",) for i in range(depth)]
    blocks[0] = ("patch_embed", *blocks[0])
    blocks[-1] = (*blocks[-1], "norm")
    return tuple(blocks)


# DINOv2 (Oquab et al., TMLR 2024), as SALAD, BoQ and MegaLoc use it: timm's implementation
# (icsa/models/vit.py says why timm), patch tokens as a C×(H/14)×(W/14) map, twelve blocks.
_DINOV2 = "https://dl.fbaipublicfiles.com/dinov2"
for _name, _label, _timm, _dim, _hub in (
    ("dinov2s", "DINOv2 ViT-S/14", "vit_small_patch14_dinov2", 384, "dinov2_vits14"),
    ("dinov2b", "DINOv2 ViT-B/14", "vit_base_patch14_dinov2", 768, "dinov2_vitb14"),
):
    register_backbone(
        BackboneSpec(_name, _label, None, None, vit_blocks(12), out_channels=_dim, stride=14,
                     min_image_side=14, dropped_prefixes=(), build="icsa.models.vit:build_vit",
                     options=(("model", _timm),), side_multiple=14,
                     weights_url=f"{_DINOV2}/{_hub}/{_hub}_pretrain.pth")
    )  # fmt: skip

_INDEPENDENT = "icsa.models.independent"
for _spec in (
    AttentionSpec("none", "none", "torch.nn:Identity", identity_at_init=True, arguments=()),
    AttentionSpec("ia", "IA", f"{_INDEPENDENT}:IndependentAttention", identity_at_init=True),
    AttentionSpec("icsa", "ICSA", f"{_INDEPENDENT}:ICSA", identity_at_init=True),
    AttentionSpec("ch", "CH", f"{_INDEPENDENT}:IndependentChannelAttention", identity_at_init=True),
    AttentionSpec("sp", "SP", f"{_INDEPENDENT}:IndependentSpatialAttention", identity_at_init=True),
    AttentionSpec("se", "SENet", "icsa.models.classic:SqueezeExcite", identity_at_init=False,
                  arguments=("channels",), options=(("reduction", 16),)),
    AttentionSpec("cbam", "CBAM", "icsa.models.classic:CBAM", identity_at_init=False,
                  arguments=("channels",), options=(("reduction", 8), ("kernel_size", 7))),
):  # fmt: skip
    register_attention(_spec)

# NetVLAD, the paper's (K·C; its run ids carry no suffix), and GeM (C; icsa/models/gem.py), where
# a per-location weight is not normalised away; nor is it under MixVPR (Ali-bey et al., WACV 2023;
# icsa/models/mixvpr.py: D = out_channels·out_rows = 512, built for the feature map's h×w) or the
# token aggregator BoQ (Ali-bey et al., CVPR 2024; icsa/models/boq.py: D = dim·rows = 512, any
# h×w). Their options are small, for the embedded default's 512×2×3 VGG16 map.
for _spec in (
    AggregatorSpec("netvlad", "NetVLAD", "icsa.models.netvlad:NetVLAD", needs_centroids=True,
                   arguments=("num_clusters", "channels"), suffix=""),
    AggregatorSpec("gem", "GeM", "icsa.models.gem:GeM", needs_centroids=False),
    AggregatorSpec("mixvpr", "MixVPR", "icsa.models.mixvpr:MixVPR", needs_centroids=False,
                   arguments=("channels", "height", "width"),
                   options=(("out_channels", 128), ("out_rows", 4), ("depth", 4),
                            ("mlp_ratio", 1.0))),
    AggregatorSpec("boq", "BoQ", "icsa.models.boq:BoQ", needs_centroids=False,
                   options=(("dim", 128), ("queries", 16), ("layers", 2), ("rows", 4))),
):  # fmt: skip
    register_aggregator(_spec)
