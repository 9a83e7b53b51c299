"""Building attention modules from the registry (:data:`icsa.registry.ATTENTIONS`).

``build_attention(name, channels, height, width)`` builds any module the paper compares:
``none`` (identity), ``ia``, ``icsa``, ``ch``, ``sp`` (input-independent, see
:mod:`icsa.models.independent`), ``se`` and ``cbam`` (see :mod:`icsa.models.classic`).
Adding a module is its class plus one ``AttentionSpec`` entry in :mod:`icsa.registry`; every
table then can name it.
"""

from __future__ import annotations

from torch import nn

from icsa.errors import InputError
from icsa.registry import ATTENTIONS, attention_spec

__all__ = ["ATTENTIONS", "build_attention", "parameter_size_kb"]


def build_attention(name: str, channels: int, height: int, width: int) -> nn.Module:
    """Build attention module ``name`` for feature maps of shape [B, channels, height, width].

    ``ia``/``icsa``/``sp`` resize their spatial weights bilinearly when a feature map's H×W
    differs from (height, width); ``se``/``cbam``/``none`` work at any size.
    Raises InputError (a ValueError) listing the valid names for an unknown ``name``.
    """
    spec = attention_spec(name)
    if min(channels, height, width) < 1:
        raise InputError(
            f"attention {name}: channels, height, width = {channels}, {height}, {width}; "
            "expected positive integers"
        )
    return spec.instantiate(int(channels), int(height), int(width))


def parameter_size_kb(module: nn.Module) -> float:
    """Size of a module's parameters in kB (1024 bytes), as stored (float32 → 4 bytes each)."""
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 1024.0
