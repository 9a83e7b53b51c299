"""Attention modules: the paper's Table 2 sizes, formulas, identity init, resizing, registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from icsa.errors import InputError
from icsa.models import (
    ATTENTIONS,
    CBAM,
    ICSA,
    IndependentAttention,
    SqueezeExcite,
    build_attention,
    parameter_size_kb,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.mark.parametrize(
    ("name", "kb"),
    [("ia", "2400.0"), ("icsa", "6.7"), ("ch", "2.0"), ("se", "128.0"), ("cbam", "256.4")],
)
def test_sizes_match_paper_table2(name: str, kb: str) -> None:
    module = build_attention(name, 512, 30, 40)
    assert f"{parameter_size_kb(module):.1f}" == kb
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_registry_classes_and_names() -> None:
    assert tuple(ATTENTIONS) == ("none", "ia", "icsa", "ch", "sp", "se", "cbam")
    assert isinstance(build_attention("ia", 8, 3, 4), IndependentAttention)
    assert isinstance(build_attention("icsa", 8, 3, 4), ICSA)
    assert isinstance(build_attention("se", 32, 3, 4), SqueezeExcite)
    assert isinstance(build_attention("cbam", 32, 3, 4), CBAM)
    assert parameter_size_kb(build_attention("none", 8, 3, 4)) == 0.0


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        build_attention("gcnet", 8, 3, 4)
    assert isinstance(err.value, InputError)
    for name in ATTENTIONS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["none", "ia", "icsa", "ch", "sp"])
def test_independent_modules_start_as_identity(name: str) -> None:
    x = torch.randn(2, 8, 3, 4)
    assert torch.equal(build_attention(name, 8, 3, 4)(x), x)


def test_icsa_is_channel_times_spatial_elementwise() -> None:
    m = build_attention("icsa", 5, 3, 4)
    with torch.no_grad():
        m.channel_weight.normal_()
        m.spatial_weight.normal_()
    x = torch.randn(2, 5, 3, 4)
    y = m(x)
    a_c, a_s = m.channel_weight.detach(), m.spatial_weight.detach()
    for c in range(5):
        for h in range(3):
            for w in range(4):
                ref = x[:, c, h, w] * a_c[c, 0, 0] * a_s[0, h, w]
                torch.testing.assert_close(y[:, c, h, w], ref)
    ch = build_attention("ch", 5, 3, 4)
    assert ch.spatial_weight is None and ch.channel_weight.shape == (5, 1, 1)
    sp = build_attention("sp", 5, 3, 4)
    assert sp.channel_weight is None and sp.spatial_weight.shape == (1, 3, 4)


def test_se_matches_its_formula() -> None:
    m = build_attention("se", 64, 3, 4)
    x = torch.randn(2, 64, 3, 4)
    w1 = m.fc1.weight.detach()[:, :, 0, 0]  # [4,64]
    w2 = m.fc2.weight.detach()[:, :, 0, 0]  # [64,4]
    assert w1.shape == (4, 64)
    gate = torch.sigmoid(torch.relu(x.mean((2, 3)) @ w1.T) @ w2.T)  # [B,C]
    torch.testing.assert_close(m(x), x * gate[:, :, None, None])


def test_cbam_matches_its_formula() -> None:
    m = build_attention("cbam", 64, 5, 6)
    x = torch.randn(2, 64, 5, 6)
    w1 = m.channel_gate.mlp[0].weight.detach()[:, :, 0, 0]  # [8,64]
    w2 = m.channel_gate.mlp[2].weight.detach()[:, :, 0, 0]  # [64,8]
    assert w1.shape == (8, 64)

    def mlp(v: torch.Tensor) -> torch.Tensor:
        return torch.relu(v @ w1.T) @ w2.T

    x1 = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    pooled = torch.stack([x1.mean(1), x1.amax(1)], dim=1)  # [B,2,H,W]
    conv = m.spatial_gate.conv
    assert conv.weight.shape == (1, 2, 7, 7)
    s = torch.sigmoid(F.conv2d(pooled, conv.weight, conv.bias, padding=3))
    torch.testing.assert_close(m(x), x1 * s)


@pytest.mark.parametrize("name", ["ia", "icsa", "sp"])
def test_spatial_weights_resize_bilinearly(name: str) -> None:
    m = build_attention(name, 6, 30, 40)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(0.5, 1.5)
    x = torch.randn(2, 6, 15, 20)
    y = m(x)
    assert y.shape == x.shape
    # Bilinear halving (align_corners=False) samples midway between pixel pairs: a 2×2 mean.
    weight = m.weight if name == "ia" else m.spatial_weight
    expected = x * F.avg_pool2d(weight.detach()[None], 2)[0]
    if name == "icsa":
        expected = expected * m.channel_weight.detach()
    torch.testing.assert_close(y, expected)
    assert "bilinear" in (m.__doc__ or "") + (build_attention.__doc__ or "")


@pytest.mark.parametrize("name", ["se", "cbam", "none"])
def test_input_dependent_modules_take_any_size(name: str) -> None:
    m = build_attention(name, 32, 30, 40)
    assert m(torch.randn(1, 32, 7, 9)).shape == (1, 32, 7, 9)
