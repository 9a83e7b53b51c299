"""DINOv2 ViT backbones (icsa/models/vit.py): the patch map, block freezing, weights, and a
training run that resumes bit-identically.

ViT-S/14 is built at tiny image sizes (28×42: a 2×3 patch grid). Training uses ``vittest``, a
2-block, 64-dim ViT registered only in this file through the same code path (the timm DINOv2
model with smaller depth and width): ViT-S trains too slowly for CI on 2 cores.
"""

from __future__ import annotations

import pytest
import timm
import torch

from icsa import registry
from icsa.errors import InputError
from icsa.input_sizes import image_size_problem
from icsa.models import build_backbone, build_model, feature_shape_for
from icsa.registry_entries import vit_blocks
from icsa.spec import ModelSpec
from icsa.step_settings import KMeansSettings
from icsa.train.kmeans import compute_centroids
from tests.helpers.city import QUICK, killed_in_epoch_2, run_training

torch.set_num_threads(1)
SIZE = (28, 42)


def _images(n: int = 2, size: tuple[int, int] = SIZE) -> torch.Tensor:
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(5))


def _timm_state(seed: int) -> dict[str, torch.Tensor]:
    """timm's own ViT-S/14 DINOv2 init from ``seed``: what build_vit makes for that seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = timm.create_model("vit_small_patch14_dinov2", num_classes=0, dynamic_img_size=True)
    return vit.state_dict()


def test_output_is_the_patch_grid_and_sizes_must_be_multiples_of_14():
    assert feature_shape_for("dinov2s", SIZE) == (384, 2, 3)
    assert feature_shape_for("dinov2b", (14, 28)) == (768, 1, 2)
    with torch.no_grad():
        out = build_backbone("dinov2s")(_images())
    assert out.shape == (2, 384, 2, 3)
    assert image_size_problem("dinov2s", SIZE) is None
    assert "multiples of 14" in image_size_problem("dinov2s", (30, 42))
    with pytest.raises(InputError, match=r"multiples of 14 for dinov2b .*e\.g\. 28×42"):
        ModelSpec("dinov2b", "icsa", 4, (30, 42))
    assert "at least 14×14" in image_size_problem("dinov2s", (7, 28))


@pytest.mark.parametrize("k", [None, 1, 5, 12])
def test_lowest_trained_block_trains_blocks_k_to_12_and_the_final_norm(k):
    net = build_backbone("dinov2s", "none" if k is None else k)
    assert net.num_blocks == registry.backbone_spec("dinov2b").num_blocks == 12
    with pytest.raises(InputError, match="none or 1..12 for dinov2s"):
        registry.check_block("dinov2s", 13)
    for name, p in net.named_parameters():
        block = int(name.split(".")[1]) + 1  # "blocks.<i>.…": backbone block i + 1
        if ".embed." in name:  # patch embedding, CLS token, positional embedding
            assert block == 1 and p.requires_grad == (k == 1), name
        elif ".norm." in name:
            assert block == 12 and p.requires_grad == (k is not None), name
        else:
            assert p.requires_grad == (k is not None and block >= k), name
    # The blocks hold each parameter of the ViT once (none lost, none shared twice).
    assert sum(p.numel() for p in net.parameters()) == sum(
        v.numel() for v in _timm_state(0).values()
    )


def test_random_init_is_timms_from_the_seed():
    a, b, c = (build_backbone("dinov2s", init_seed=s) for s in (0, 0, 1))
    x = _images()
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and not torch.allclose(a(x), c(x))


def test_state_dict_files_in_dinov2_and_timm_key_names_load(tmp_path):
    reference = build_backbone("dinov2s", init_seed=3)
    timm_keys = _timm_state(3)
    official = {**timm_keys, "mask_token": torch.zeros(1, 384)}  # torch.hub dinov2_vits14's keys
    x = _images()
    for name, state in (("timm.pt", timm_keys), ("dinov2.pt", official)):
        torch.save(state, tmp_path / name)
        loaded = build_backbone("dinov2s", "12", tmp_path / name)
        with torch.no_grad():
            assert torch.equal(loaded(x), reference(x)), name
    bad = {k.replace("blocks.3.", "block3."): v for k, v in timm_keys.items()}
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InputError, match=r"missing \['blocks\.3\..*unexpected \['block3\."):
        build_backbone("dinov2s", "none", tmp_path / "bad.pt")


def test_imagenet_weights_come_from_torch_hubs_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "dinov2_vits14_pretrain.pth"
    url = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"
    with pytest.raises(InputError, match=f"expected the file {expected}.*{url}"):
        build_backbone("dinov2s", "none", "imagenet")
    expected.parent.mkdir(parents=True)
    torch.save({**_timm_state(4), "mask_token": torch.zeros(1, 384)}, expected)
    with torch.no_grad():
        got = build_backbone("dinov2s", "none", "imagenet")(_images())
        assert torch.equal(got, build_backbone("dinov2s", init_seed=4)(_images()))


@pytest.mark.parametrize("attention", ["icsa", "se"])
def test_attention_modules_and_aggregators_apply_to_the_patch_map(attention):
    for aggregation, dim in (("gem", 384), ("netvlad", 4 * 384)):
        model = build_model("dinov2s", attention, 4, SIZE, "12", aggregation=aggregation)
        x = _images()
        desc = model(x)
        assert desc.shape == (2, dim)
        desc.sum().backward()
        assert all(p.grad is not None for p in model.attention.parameters())
        assert model.backbone.blocks[11].layers[0].attn.qkv.weight.grad is not None
    with torch.no_grad():  # ICSA is the identity at init: the map is the backbone's
        model = build_model("dinov2s", "icsa", 4, SIZE, "none")
        assert torch.equal(model.local_features(x), model.backbone(x))


@pytest.fixture
def vittest():
    """A 2-block, 64-dim, 2-head DINOv2-style ViT, registered for this test only."""
    spec = registry.BackboneSpec(
        "vittest", "ViT-test", None, None, vit_blocks(2), out_channels=64, stride=14,
        min_image_side=14, dropped_prefixes=(), build="icsa.models.vit:build_vit",
        options=(("model", "vit_small_patch14_dinov2"), ("depth", 2), ("embed_dim", 64),
                 ("num_heads", 2)),
        side_multiple=14,
    )  # fmt: skip
    registry.register_backbone(spec)
    yield spec.name
    del registry.BACKBONES[spec.name]


def test_a_vit_run_resumes_bit_identically(vittest, tiny_city, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root, _ = tiny_city
    model = {"backbone": vittest, "image_size": (28, 28), "lowest_trained_block": "2"}
    cents = tmp_path / "centroids.npz"
    spec = ModelSpec(**{**model, "attention": "none", "num_clusters": 4})
    compute_centroids(spec, root, "pitts30k", "train", cents, KMeansSettings(20, iterations=10))
    settings = {**QUICK, "epochs": 2}
    run_training(tiny_city, tmp_path / "straight", settings, centroids=cents, **model)

    with killed_in_epoch_2(), pytest.raises(KeyboardInterrupt):  # after two steps of epoch 2
        run_training(tiny_city, tmp_path / "resumed", settings, centroids=cents, **model)
    assert run_training(tiny_city, tmp_path / "resumed", settings, centroids=cents,
                        **model)["epochs"] == 2  # fmt: skip

    a, b = (torch.load(tmp_path / run / "state" / "checkpoint_last.pt", weights_only=True)
            for run in ("straight", "resumed"))  # fmt: skip
    assert a["model_state"].keys() == b["model_state"].keys()
    trained = [k for k in a["model_state"] if k.startswith("backbone.blocks.1.")]
    assert trained and not torch.equal(
        a["model_state"][trained[0]], build_model(**spec.build_args()).state_dict()[trained[0]]
    )  # block 2 did train
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    untimed = [[{k: v for k, v in row.items() if not k.endswith("_s")} for row in c["history"]]
               for c in (a, b)]  # fmt: skip
    assert untimed[0] == untimed[1] and len(untimed[0]) == 3  # epoch 0 (untrained) + 2


def test_plan_counts_a_vits_flops_and_prefix():
    """ViT-S/14 at 224×224: 256 patches + CLS (N = 257), D = 384; per block 12·N·D² MACs in the
    linear layers and 2·N²·D in attention, plus the patch embedding's 256·D·3·14² (one FLOP
    counted per add and per multiply)."""
    from icsa import plan

    c = plan.model_costs(ModelSpec("dinov2s", "none", 4, (224, 224), lowest_trained_block="10",
                                   aggregation="gem"))  # fmt: skip
    n, d = 257, 384
    block = 2 * (12 * n * d * d + 2 * n * n * d)
    assert c.prefix_gflop + c.trained_gflop == pytest.approx(
        (12 * block + 2 * 256 * d * 3 * 14 * 14) / 1e9, rel=0.01
    )
    assert c.trained_gflop == pytest.approx(3 * block / 1e9, rel=0.01)  # blocks 10, 11, 12
    assert c.prefix_values == d * (1 + 16) * 16  # tokens packed as a map: CLS row + 16×16
    assert c.descriptor_dim == d


def test_a_backbone_entry_names_torchvision_or_a_build_not_both():
    vit = registry.backbone_spec("dinov2s")
    for bad in (
        registry.BackboneSpec(**{**vit.__dict__, "name": "both", "torchvision": "resnet18"}),
        registry.BackboneSpec(**{**vit.__dict__, "name": "neither", "build": None}),
        registry.BackboneSpec(**{**vit.__dict__, "name": "zero", "side_multiple": 0}),
    ):
        with pytest.raises(InputError, match="exactly one of torchvision and build"):
            registry.register_backbone(bad)
    assert not {"both", "neither", "zero"} & set(registry.BACKBONES)
