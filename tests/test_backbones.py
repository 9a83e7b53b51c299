"""Backbones: the cut points (README), frozen blocks, seeded init and weight loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from icsa.errors import InputError
from icsa.models import BACKBONES, build_backbone, feature_shape_for


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_vgg16_480x640_gives_512x30x40_map() -> None:
    net = build_backbone("vgg16")
    with torch.no_grad():
        y = net(torch.randn(1, 3, 480, 640))
    assert y.shape == (1, 512, 30, 40)
    # Cut before conv5_3's ReLU: the map has negative values (a ReLU output would not).
    assert (y < 0).any()
    assert feature_shape_for("vgg16", (480, 640)) == (512, 30, 40)


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "resnet50", "alexnet"])
@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_feature_shape_matches_a_real_forward(name: str, size: tuple[int, int]) -> None:
    net = build_backbone(name).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, *size))
    assert tuple(y.shape[1:]) == feature_shape_for(name, size)
    assert y.shape[1] == net.out_channels


def test_cut_points_follow_torchvision_layers() -> None:
    vgg = build_backbone("vgg16")
    with torch.device("meta"):  # structure only, no init cost
        ref = torchvision.models.vgg16(weights=None).features
    # Block i holds exactly the torchvision layers of conv{i}_x (+ pool), conv5_3 last, no ReLU.
    spans = [(0, 5), (5, 10), (10, 17), (17, 24), (24, 29)]
    for block, (a, b) in zip(vgg.blocks, spans, strict=True):
        assert [type(m) for m in block] == [type(m) for m in ref[a:b]]
    assert isinstance(vgg.blocks[-1][-1], nn.Conv2d) and vgg.blocks[-1][-1].out_channels == 512
    alex = build_backbone("alexnet")
    assert isinstance(alex.blocks[-1][-1], nn.Conv2d) and len(alex.blocks[-1]) == 1
    assert sum(len(b) for b in alex.blocks) == 11  # features[:11]: conv5, not its ReLU/pool
    for name in ("resnet18", "resnet50"):
        res = build_backbone(name)
        with torch.device("meta"):
            full = getattr(torchvision.models, name)(weights=None)
        assert [len(list(b.parameters())) for b in res.blocks[1:]] == [
            len(list(layer.parameters()))
            for layer in (full.layer1, full.layer2, full.layer3, full.layer4)
        ]
        kept = [p.numel() for n, p in full.named_parameters() if not n.startswith("fc.")]
        assert sum(p.numel() for p in res.parameters()) == sum(kept)  # everything but fc
    assert res.out_channels == 2048 and feature_shape_for("resnet50", (480, 640)) == (2048, 15, 20)


def test_frozen_batchnorm_stays_in_eval_mode_under_train() -> None:
    net = build_backbone("resnet18", lowest_trained_block=3)
    net.train()
    frozen_bn = [m for b in net.blocks[:2] for m in b.modules() if isinstance(m, nn.BatchNorm2d)]
    trained_bn = [m for b in net.blocks[2:] for m in b.modules() if isinstance(m, nn.BatchNorm2d)]
    assert frozen_bn and all(not m.training for m in frozen_bn)
    assert trained_bn and all(m.training for m in trained_bn)
    before = [m.running_mean.clone() for m in frozen_bn]
    net(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, frozen_bn, strict=True))
    assert not all(
        torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in trained_bn
    )


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_backbone("alexnet", init_seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b = build_backbone("alexnet", init_seed=7)
    c = build_backbone("alexnet", init_seed=8)
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), n
        if pa.ndim > 1:
            assert not torch.equal(pa, pc), n


def test_imagenet_weights_come_from_torch_home(tmp_path: Path, monkeypatch) -> None:
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert os.path.basename(url) == "resnet18-f37072fd.pth"
    ref = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        ref.conv1.weight.normal_()
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(ref.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = build_backbone("resnet18", weights="imagenet")
    assert torch.equal(net.blocks[0][0].weight, ref.conv1.weight)
    assert torch.equal(net.blocks[4][1].bn2.running_var, ref.layer4[1].bn2.running_var)


def test_state_dict_path_loads_and_bad_files_are_input_errors(tmp_path: Path) -> None:
    ref = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("classifier.")}
    torch.save(state, path)
    net = build_backbone("alexnet", weights=str(path))
    assert torch.equal(net.blocks[4][0].weight, ref.features[10].weight)
    with pytest.raises(InputError, match="missing.pth"):
        build_backbone("alexnet", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(InputError, match="keys do not match"):
        build_backbone("resnet18", weights=str(path))


def test_bad_names_are_input_errors() -> None:
    with pytest.raises(InputError, match="vgg16, resnet18, resnet50, alexnet"):
        build_backbone("vgg19")
    with pytest.raises(InputError, match="lowest_trained_block"):
        build_backbone("alexnet", lowest_trained_block=6)


def test_minimum_image_sides_are_torchs_own():
    from icsa.models.backbones import _meta_blocks

    def map_shape(name, side):  # a batch of 2, as in training (BatchNorm needs > 1 value)
        x = torch.empty(2, 3, side, side, device="meta")
        for block in _meta_blocks(name)[1]:
            x = block(x)
        return x.shape[2], x.shape[3]

    for name, spec in BACKBONES.items():
        if spec.build is not None:  # the ViTs: tests/test_vit_backbone.py
            continue
        side = spec.min_image_side
        assert min(map_shape(name, side)) >= 1, name
        if side > 1:
            with pytest.raises(RuntimeError):  # torch refuses an empty output
                map_shape(name, side - 1)
