"""GeM, the second aggregator: where ICSA's spatial half is not inert.

Under NetVLAD every local descriptor is L2-normalised first, so a positive per-location weight
cancels and its gradient is zero; GeM pools without that normalisation, so the same weights
get a gradient. Also: GeM against a direct formula, GeM run ids, and table rows compared within
one aggregator.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icsa.errors import InputError
from icsa.models import build_model
from icsa.models.gem import GeM
from icsa.pipeline import table_spec
from icsa.spec import ModelSpec, RunSpec, parse_run_id, run_id
from icsa.tables.compose import Statistics, build_run_table, load_paper
from icsa.train.settings import TrainSettings
from tests.helpers.tables import PAPER, write_run


def _spatial_grad(aggregation: str) -> torch.Tensor:
    model = build_model("vgg16", "icsa", 4, (32, 48), "none", "none", 0, aggregation)
    with torch.no_grad():  # a non-uniform spatial weight, as after some training
        model.attention.spatial_weight.uniform_(0.5, 1.5)
    images = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    target = torch.randn(model.descriptor_dim, generator=torch.Generator().manual_seed(1))
    (model(images) @ target).sum().backward()
    return model.attention.spatial_weight.grad


def test_spatial_weights_get_a_gradient_under_gem_and_none_under_netvlad() -> None:
    gem, netvlad = _spatial_grad("gem"), _spatial_grad("netvlad")
    assert gem.abs().max() > 1e-4
    # Zero up to float32 rounding of the normalisation (relative to GeM's gradient).
    assert netvlad.abs().max() < 1e-4 * gem.abs().max()


def test_gem_equals_the_formula_and_p_learns() -> None:
    x = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pool = GeM(5).double()
    out = pool(x)
    arr = np.clip(np.maximum(x.numpy(), 0), 1e-6, None)
    ref = (arr**3).mean(axis=(2, 3)) ** (1 / 3)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-10)
    out[:, 0].sum().backward()
    assert pool.p.grad is not None and float(pool.p.grad.abs()) > 0
    model = build_model("vgg16", "none", 4, (32, 48), "none", "none", 0, "gem")
    assert model(torch.randn(2, 3, 32, 48)).shape == (2, 512) and model.descriptor_dim == 512
    assert "gem.p" in model.state_dict() and not any(k.startswith("netvlad") for k in
                                                     model.state_dict())  # fmt: skip


def test_gem_run_ids_round_trip_and_netvlad_ids_are_unchanged() -> None:
    assert run_id("pitts30k", "vgg16", "icsa", 5, 0) == "pitts30k-vgg16-icsa-b5-s0"
    gem = run_id("pitts30k", "vgg16", "sp", "none", 2, "gem")
    assert gem == "pitts30k-vgg16-sp-gem-bnone-s2"
    assert parse_run_id(gem)["aggregation"] == "gem"
    assert parse_run_id("pitts30k-vgg16-sp-bnone-s2")["aggregation"] == "netvlad"
    model = ModelSpec("vgg16", "sp", 4, (32, 48), lowest_trained_block="none", aggregation="gem")
    assert RunSpec("pitts30k", model, TrainSettings(), 2).id == gem
    with pytest.raises(InputError, match="aggregation='vlad'"):
        ModelSpec("vgg16", "sp", 4, (32, 48), aggregation="vlad")


def test_table_rows_compare_within_one_aggregator(tmp_path) -> None:
    config = {
        "dataset": "pitts30k", "datasets": {"pitts30k": {"root": "x"}}, "seeds": [0],
        "evalsets": {"main": "pitts30k-test"},
        "tables": {"table7": {"evalset": "main", "backbones": ["vgg16"], "attentions":
                              ["none", "sp"], "blocks": ["last"], "baseline": "none",
                              "aggregations": ["netvlad", "gem"]}},
    }  # fmt: skip
    spec = table_spec(config, "table7")
    runs = [row["runs"][0] for row in spec["rows"]]
    assert runs == ["pitts30k-vgg16-none-b5-s0", "pitts30k-vgg16-sp-b5-s0",
                    "pitts30k-vgg16-none-gem-b5-s0", "pitts30k-vgg16-sp-gem-b5-s0"]  # fmt: skip
    found = {"pitts30k-vgg16-none-b5-s0": 0.2, "pitts30k-vgg16-sp-b5-s0": 0.2,
             "pitts30k-vgg16-none-gem-b5-s0": 0.3, "pitts30k-vgg16-sp-gem-b5-s0": 0.7}  # fmt: skip
    for run, p in found.items():
        ranks = np.where(np.arange(200) < 200 * p, 0, -1)
        write_run(tmp_path, run, "pitts30k-test", ranks)
    df = build_run_table(spec, tmp_path, load_paper(PAPER), Statistics())
    df = df.set_index("network")
    assert df.loc["VGG16+SP", "dR@1"] == pytest.approx(0.0)  # vs NetVLAD's none
    assert df.loc["VGG16+SP (GeM)", "dR@1"] == pytest.approx(40.0)  # vs GeM's none
    assert df.loc["VGG16+SP (GeM)", "baseline"] == "VGG16 (GeM)"
    assert np.isnan(df.loc["VGG16 (GeM)", "paper_R@1"])
