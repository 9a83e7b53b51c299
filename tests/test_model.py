"""The full model: descriptors, the frozen-prefix split, requires_grad, spatial inertness."""

from __future__ import annotations

import pytest
import torch
import torchvision

from icsa.errors import InputError
from icsa.models import NetVLAD, build_attention, build_model


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


# Independent statement of the README's blocks, as torchvision parameter-name prefixes.
def _vgg(a: int, b: int) -> tuple[str, ...]:
    return tuple(f"features.{i}." for i in range(a, b))


BLOCK_PREFIXES = {
    "vgg16": [_vgg(0, 5), _vgg(5, 10), _vgg(10, 17), _vgg(17, 24), _vgg(24, 29)],
    "alexnet": [_vgg(0, 3), _vgg(3, 6), _vgg(6, 8), _vgg(8, 10), _vgg(10, 11)],
    "resnet18": [("conv1.", "bn1."), ("layer1.",), ("layer2.",), ("layer3.",), ("layer4.",)],
}
BLOCK_PREFIXES["resnet50"] = BLOCK_PREFIXES["resnet18"]


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "resnet50", "alexnet"])
def test_requires_grad_for_every_lowest_trained_block(name: str) -> None:
    with torch.device("meta"):
        full = getattr(torchvision.models, name)(weights=None)
    numel = [
        sum(p.numel() for n, p in full.named_parameters() if n.startswith(prefixes))
        for prefixes in BLOCK_PREFIXES[name]
    ]
    for k in ["none", 1, 2, 3, 4, "5"]:
        model = build_model(name, "icsa", 4, (64, 64), lowest_trained_block=k)
        trained = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
        expected = 0 if k == "none" else sum(numel[int(k) - 1 :])
        assert trained == expected, (name, k)
        # Nothing below block k trains; attention and NetVLAD always do.
        for i, block in enumerate(model.backbone.blocks):
            want = k != "none" and i >= int(k) - 1
            assert all(p.requires_grad == want for p in block.parameters()), (name, k, i)
        assert all(p.requires_grad for p in model.attention.parameters())
        assert all(p.requires_grad for p in model.netvlad.parameters())
        assert model.config["lowest_trained_block"] == str(k)


def test_descriptors_have_kc_entries_and_unit_norm() -> None:
    model = build_model("vgg16", "icsa", 4, (64, 64)).eval()
    with torch.no_grad():
        d = model(torch.randn(2, 3, 64, 64))
    assert model.feature_shape == (512, 4, 4)
    assert d.shape == (2, 4 * 512)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize(("name", "k"), [("alexnet", "none"), ("alexnet", 1), ("resnet18", 3)])
def test_forward_equals_cached_prefix_path(name: str, k: str | int) -> None:
    model = build_model(name, "cbam", 4, (64, 64), lowest_trained_block=k).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # how the training loop caches the frozen part
        prefix = model.frozen_prefix(x)
    if k == 1:
        assert torch.equal(prefix, x)
    if k == "none":
        assert prefix.shape == (2, *model.feature_shape)
    torch.testing.assert_close(model(x), model.forward_from_prefix(prefix), rtol=0, atol=0)
    local = model.local_features(x)
    assert local.shape == (2, *model.feature_shape)
    torch.testing.assert_close(model.netvlad(local), model(x), rtol=0, atol=0)


def test_same_seed_same_model_and_bad_sizes() -> None:
    a = build_model("alexnet", "icsa", 4, [64, 64], init_seed=3)
    b = build_model("alexnet", "icsa", 4, (64, 64), init_seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.config["image_size"] == [64, 64] and a.config["attention"] == "icsa"
    with pytest.raises(InputError, match="image_size"):
        build_model("vgg16", "none", 4, (8, 8))
    with pytest.raises(InputError, match="image_size"):
        build_model("vgg16", "none", 4, (64,))


def _pipeline(name: str) -> tuple[torch.nn.Module, NetVLAD, torch.Tensor]:
    att = build_attention(name, 16, 5, 6)
    vlad = NetVLAD(4, 16)
    with torch.no_grad():
        vlad.conv.weight.normal_(0, 2)
        vlad.centroids.normal_(0, 0.3)
        for p in att.parameters():
            # Non-trivial weights (ICSA's spatial half is set by the tests). CBAM's stay small so
            # that no sigmoid underflows to exactly 0, where a gate would stop being positive.
            p.normal_(0.0, 0.2) if name == "cbam" else p.normal_(1.0, 0.5)
    return att, vlad, torch.randn(2, 16, 5, 6)


@pytest.mark.parametrize("name", ["icsa", "sp"])
def test_spatial_half_is_inert_under_netvlad(name: str) -> None:
    att, vlad, x = _pipeline(name)
    with torch.no_grad():
        att.spatial_weight.fill_(1.0)
        base = vlad(att(x))
        att.spatial_weight.uniform_(0.05, 5.0)  # any positive per-location scaling
        scaled = vlad(att(x))
        torch.testing.assert_close(scaled, base, rtol=1e-5, atol=1e-6)
        att.spatial_weight[0, 2, 3] = -1.0  # negative control: a sign flip does change it
        assert (vlad(att(x)) - base).abs().max() > 1e-3
        att.spatial_weight.uniform_(0.05, 5.0)
    (vlad(att(x)) * torch.randn(2, 64)).sum().backward()
    spatial_grad = att.spatial_weight.grad.abs().max()
    # Scale of a live gradient: ICSA's channel half, or the input-dependent NetVLAD conv.
    live = att.channel_weight.grad if name == "icsa" else vlad.conv.weight.grad
    assert live.abs().max() > 1e-3
    assert spatial_grad <= 1e-4 * live.abs().max()


def test_ia_is_not_inert_negative_control() -> None:
    att, vlad, x = _pipeline("ia")
    (vlad(att(x)) * torch.randn(2, 64)).sum().backward()
    assert att.weight.grad.abs().max() > 1e-3


def test_cbam_spatial_gate_is_inert_under_netvlad() -> None:
    att, vlad, x = _pipeline("cbam")
    with torch.no_grad():
        base = vlad(att(x))
        att.spatial_gate.conv.weight.normal_(0, 1)
        att.spatial_gate.conv.bias.normal_(0, 1)
        torch.testing.assert_close(vlad(att(x)), base, rtol=1e-5, atol=1e-6)
    (vlad(att(x)) * torch.randn(2, 64)).sum().backward()
    channel = max(p.grad.abs().max() for p in att.channel_gate.parameters())
    spatial = max(p.grad.abs().max() for p in att.spatial_gate.parameters())
    assert channel > 1e-4
    assert spatial <= 1e-4 * channel


def test_spatial_weights_get_no_gradient_in_the_full_model() -> None:
    model = build_model("alexnet", "icsa", 4, (64, 64))
    with torch.no_grad():
        model.attention.channel_weight.normal_(1.0, 0.5)
        model.attention.spatial_weight.uniform_(0.5, 1.5)
    (model(torch.randn(2, 3, 64, 64)) * torch.randn(2, 4 * 256)).sum().backward()
    channel = model.attention.channel_weight.grad.abs().max()
    assert channel > 0
    assert model.attention.spatial_weight.grad.abs().max() <= 1e-4 * channel


def test_weights_none_means_random_init_and_bad_types_name_the_argument():
    a = build_model("vgg16", "icsa", 4, (32, 32), "5", None, 3)
    b = build_model("vgg16", "icsa", 4, (32, 32), "5", "none", 3)
    assert a.config["weights"] == "none"
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    with pytest.raises(InputError, match=r"weights=3: expected 'none'.*'imagenet'"):
        build_model("vgg16", "icsa", 4, (32, 32), "5", 3, 0)
