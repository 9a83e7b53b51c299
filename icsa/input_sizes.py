"""The smallest image side each backbone turns into a non-empty feature map (torch-free).

The workflow checks ``model.image_size`` against it when it parses the config, so that an image
too small for a backbone fails before data preparation and k-means rather than in the first
job that builds the network. The values are torch's own arithmetic on the cut backbones (their
blocks on the meta device, as ``feature_shape_for`` runs them), pinned by tests/test_backbones.py.
"""

from __future__ import annotations

# ResNet's padded convolutions and pools give every input at least a 1×1 map.
MIN_IMAGE_SIDE: dict[str, int] = {"vgg16": 16, "resnet18": 1, "alexnet": 31}


def image_size_problem(backbone: str, image_size: list[int] | tuple[int, int]) -> str | None:
    """Why ``image_size`` (H, W) is too small for ``backbone``, or None if it is not."""
    side = MIN_IMAGE_SIDE.get(backbone)
    if side is None or min(image_size) >= side:
        return None
    return f"at least {side}×{side} for {backbone} (a smaller image has an empty feature map)"
