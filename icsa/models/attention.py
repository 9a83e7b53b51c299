"""The attention registry: one plain dict from name to constructor.

``build_attention(name, channels, height, width)`` builds any module the paper compares:
``none`` (identity), ``ia``, ``icsa``, ``ch``, ``sp`` (input-independent, see
:mod:`icsa.models.independent`), ``se`` and ``cbam`` (see :mod:`icsa.models.classic`).
Adding a module is one entry here; every table then can name it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from icsa.errors import InputError
from icsa.models.classic import CBAM, SqueezeExcite
from icsa.models.independent import (
    ICSA,
    IndependentAttention,
    IndependentChannelAttention,
    IndependentSpatialAttention,
)

# Each constructor takes (channels, height, width).
ATTENTION_REGISTRY: dict[str, Callable[[int, int, int], nn.Module]] = {
    "none": lambda c, h, w: nn.Identity(),
    "ia": IndependentAttention,
    "icsa": ICSA,
    "ch": IndependentChannelAttention,
    "sp": IndependentSpatialAttention,
    "se": lambda c, h, w: SqueezeExcite(c, reduction=16),
    "cbam": lambda c, h, w: CBAM(c, reduction=8, kernel_size=7),
}
ATTENTIONS = tuple(ATTENTION_REGISTRY)


def build_attention(name: str, channels: int, height: int, width: int) -> nn.Module:
    """Build attention module ``name`` for feature maps of shape [B, channels, height, width].

    ``ia``/``icsa``/``sp`` resize their spatial weights bilinearly when a feature map's H×W
    differs from (height, width); ``se``/``cbam``/``none`` work at any size.
    Raises InputError (a ValueError) listing the valid names for an unknown ``name``.
    """
    if name not in ATTENTION_REGISTRY:
        raise InputError(f"attention={name!r}: expected one of {', '.join(ATTENTIONS)}")
    if min(channels, height, width) < 1:
        raise InputError(
            f"attention {name}: channels, height, width = {channels}, {height}, {width}; "
            "expected positive integers"
        )
    return ATTENTION_REGISTRY[name](int(channels), int(height), int(width))


def parameter_size_kb(module: nn.Module) -> float:
    """Size of a module's parameters in kB (1024 bytes), as stored (float32 → 4 bytes each)."""
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 1024.0
