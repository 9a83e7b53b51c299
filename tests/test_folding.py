"""Folding ICSA's channel half into the last conv gives the same descriptors, at zero cost."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from icsa.errors import InputError
from icsa.models import PlaceModel, build_model, fold_attention


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _trained_like(backbone: str, attention: str) -> PlaceModel:
    model = build_model(backbone, attention, 4, (64, 64), lowest_trained_block=5).eval()
    with torch.no_grad():
        # Non-trivial weights: channel weights of both signs, positive spatial weights,
        # a non-zero conv bias (random init sets it to 0) and spread centroids.
        a = model.attention
        a.channel_weight.normal_(0.5, 1.0)
        if a.spatial_weight is not None:
            a.spatial_weight.uniform_(0.2, 3.0)
        model.backbone.blocks[-1][-1].bias.normal_(0, 0.1)
        model.netvlad.centroids.normal_(0, 0.05)
    return model


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    ("backbone", "attention"), [("vgg16", "icsa"), ("alexnet", "icsa"), ("alexnet", "ch")]
)
def test_folded_model_gives_the_same_descriptors(backbone: str, attention: str) -> None:
    model = _trained_like(backbone, attention)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_attention(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want, got = model(x), folded(x)
        plain = model.netvlad(model.backbone(x))  # the model with its attention just dropped
    assert isinstance(folded.attention, nn.Identity)
    assert folded.config["attention"] == "none" and folded.folded_from == attention
    assert sum(p.numel() for p in folded.parameters()) == sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith("attention.")
    )
    for row in range(2):
        assert _rel_err(got[row], want[row]) < 1e-5
    assert _rel_err(plain, want) > 1e-2  # the channel weights matter: folding is not a no-op
    for k, v in model.state_dict().items():  # the original is left untouched
        assert torch.equal(v, before[k]), k
    # A checkpoint of the folded model reloads as a plain model with attention none.
    rebuilt = build_model(**folded.config).eval()
    rebuilt.load_state_dict(folded.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), got)


def test_non_positive_spatial_weights_refuse_to_fold() -> None:
    model = _trained_like("alexnet", "icsa")
    with torch.no_grad():
        model.attention.spatial_weight[0, 1, 1] = -0.5
    with pytest.raises(InputError, match="spatial weights are <= 0"):
        fold_attention(model)


@pytest.mark.parametrize(("backbone", "attention"), [("resnet18", "icsa"), ("alexnet", "se")])
def test_unfoldable_models_are_input_errors(backbone: str, attention: str) -> None:
    model = build_model(backbone, attention, 4, (64, 64))
    with pytest.raises(InputError, match=backbone if backbone == "resnet18" else attention):
        fold_attention(model)
