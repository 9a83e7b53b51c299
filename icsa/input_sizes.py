"""The smallest image side each backbone turns into a non-empty feature map (torch-free).

The workflow checks ``model.image_size`` against it when it parses the config, so that an image
too small for a backbone fails before data preparation and k-means rather than in the first
job that builds the network. The values (``BackboneSpec.min_image_side``) are torch's own
arithmetic on the cut backbones (their blocks on the meta device, as ``feature_shape_for`` runs
them), pinned by tests/test_backbones.py.
"""

from __future__ import annotations

from icsa.registry import backbone_spec


def image_size_problem(backbone: str, image_size: list[int] | tuple[int, int]) -> str | None:
    """Why ``image_size`` (H, W) is too small for ``backbone``, or None if it is not."""
    side = backbone_spec(backbone).min_image_side
    if min(image_size) >= side:
        return None
    return f"at least {side}×{side} for {backbone} (a smaller image has an empty feature map)"
