"""The image sizes each backbone takes (torch-free): a smallest side, and for a ViT sides that
are multiples of its patch size (``BackboneSpec.side_multiple``: 14 for DINOv2).

The workflow checks ``model.image_size`` against it when it parses the config, so that an image
too small for a backbone fails before data preparation and k-means rather than in the first
job that builds the network. The values (``BackboneSpec.min_image_side``) are torch's own
arithmetic on the cut backbones (their blocks on the meta device, as ``feature_shape_for`` runs
them), pinned by tests/test_backbones.py.
"""

from __future__ import annotations

from icsa.registry import backbone_spec


def image_size_problem(backbone: str, image_size: list[int] | tuple[int, int]) -> str | None:
    """Why ``image_size`` (H, W) does not suit ``backbone``, or None if it does."""
    spec = backbone_spec(backbone)
    side, multiple = spec.min_image_side, spec.side_multiple
    if min(image_size) < side:
        return f"at least {side}×{side} for {backbone} (a smaller image has an empty feature map)"
    if any(int(v) % multiple for v in image_size):
        h, w = (int(v) // multiple * multiple or multiple for v in image_size)
        return (
            f"height and width multiples of {multiple} for {backbone} (its patch size), "
            f"e.g. {h}×{w}"
        )
    return None
