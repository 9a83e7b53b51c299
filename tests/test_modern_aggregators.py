"""MixVPR and BoQ, the modern aggregators (issue 29): where ICSA's spatial half is not inert.

Each is a registry entry without centroids: its descriptors have the documented size and unit
norm, are a function of the seed, its spatial-attention weights get a gradient (under NetVLAD
they get none, tests/test_gem.py), its run ids round-trip, the real Snakemake plans its runs
without k-means, and a short CPU run resumes bit-identically.
"""

from __future__ import annotations

import re

import pytest
import torch

from icsa import registry
from icsa.models import build_model
from icsa.models.boq import BoQ
from icsa.models.mixvpr import MixVPR
from icsa.plan import model_costs
from icsa.spec import ModelSpec, RunSpec, parse_run_id, run_id
from icsa.train import RunInputs, RunOptions, TrainSettings, train_run
from tests.helpers.city import QUICK, killed_in_epoch_2
from tests.helpers.workflow import job_counts, planned_runs, scratch_workdir, snakemake

MODERN = ("mixvpr", "boq")
SIZE = (32, 48)  # the embedded default's images: a 512×2×3 VGG16 map


def _model(aggregation: str, attention: str = "icsa", seed: int = 0):
    return build_model("vgg16", attention, 4, SIZE, "none", "none", seed, aggregation)


@pytest.mark.parametrize("aggregation", MODERN)
def test_descriptors_have_the_registered_size_unit_norm_and_follow_the_seed(aggregation):
    images = torch.rand(3, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    model = _model(aggregation).eval()
    with torch.no_grad():
        out = model(images)
        again = _model(aggregation).eval()(images)
        other = _model(aggregation, seed=1).eval()(images)
        larger = model(torch.rand(2, 3, 64, 80))  # another image size: a 4×5 map
    assert out.shape == (3, 512) and model.descriptor_dim == 512  # registry_entries' options
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert torch.equal(out, again) and not torch.allclose(out, other)
    assert larger.shape == (2, 512)
    assert model.pool is getattr(model, aggregation) and not registry.needs_centroids(aggregation)
    assert not any(k.startswith(("netvlad.", "gem.")) for k in model.state_dict())


def test_the_output_sizes_follow_the_options():
    x = torch.randn(2, 16, 3, 5)
    mix = MixVPR(16, 3, 5, out_channels=8, out_rows=3, depth=2, mlp_ratio=2.0)
    assert mix(x).shape == (2, 24) and mix.output_dim == 24
    assert mix.mix[0].expand.out_features == 30  # ratio · h·w
    boq = BoQ(16, dim=32, queries=5, layers=3, rows=2)
    assert boq(x).shape == (2, 64) and boq.output_dim == 64 and boq.mix.in_features == 15


def _spatial_grad(aggregation: str, attention: str) -> torch.Tensor:
    model = _model(aggregation, attention)
    with torch.no_grad():  # a non-uniform spatial weight, as after some training
        model.attention.spatial_weight.uniform_(0.5, 1.5)
    images = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    target = torch.randn(model.descriptor_dim, generator=torch.Generator().manual_seed(1))
    (model(images) @ target).sum().backward()
    return model.attention.spatial_weight.grad


@pytest.mark.parametrize("attention", ["icsa", "sp"])
def test_the_spatial_half_gets_a_gradient_under_mixvpr_and_boq_and_none_under_netvlad(attention):
    netvlad = _spatial_grad("netvlad", attention).abs().max()
    for aggregation in MODERN:
        grad = _spatial_grad(aggregation, attention).abs().max()
        assert grad > 1e-4, aggregation
        # NetVLAD's is zero up to float32 rounding of its normalisation.
        assert netvlad < 1e-4 * grad, aggregation


def test_run_ids_round_trip_and_the_old_ones_are_unchanged():
    assert registry.pool_pattern() == "(-gem|-mixvpr|-boq)?"
    for aggregation in MODERN:
        rid = run_id("pitts30k", "vgg16", "icsa", "5", 0, aggregation)
        assert rid == f"pitts30k-vgg16-icsa-{aggregation}-b5-s0"
        assert parse_run_id(rid)["aggregation"] == aggregation
        model = ModelSpec("vgg16", "icsa", 4, SIZE, lowest_trained_block="5",
                          aggregation=aggregation)  # fmt: skip
        assert RunSpec("pitts30k", model, TrainSettings(), 0).id == rid
        assert ModelSpec.from_dict(model.to_dict()) == model
    assert parse_run_id("pitts30k-vgg16-icsa-b5-s0")["aggregation"] == "netvlad"
    assert parse_run_id("pitts30k-vgg16-icsa-gem-b5-s0")["aggregation"] == "gem"
    assert registry.network_label("vgg16", "sp", "boq") == "VGG16+SP (BoQ)"


def test_plan_counts_their_descriptor_size_flops_and_parameters():
    costs = {
        (aggregation, size): model_costs(
            ModelSpec(
                "vgg16", "icsa", 4, size, lowest_trained_block="none", aggregation=aggregation
            )  # fmt: skip
        )
        for aggregation in ("gem", *MODERN)
        for size in (SIZE, (64, 96))
    }
    for aggregation in MODERN:
        small, large = costs[aggregation, SIZE], costs[aggregation, (64, 96)]
        assert small.descriptor_dim == large.descriptor_dim == 512
        # Their layers are counted (GeM's pooling is next to nothing).
        assert small.trained_gflop > costs["gem", SIZE].trained_gflop
    # MixVPR's mixer is built for the map's h·w (6 → 24 locations), BoQ's weights are not.
    mixvpr = [costs["mixvpr", size].trainable_params for size in (SIZE, (64, 96))]
    # per location count n: 4 mixers of 2n² + 4n (two Linears, LayerNorm), the row projection
    # 4n, and ICSA's spatial weight n.
    params = [4 * (2 * n * n + 4 * n) + 4 * n + n for n in (6, 24)]
    assert mixvpr[1] - mixvpr[0] == params[1] - params[0]
    boq = [costs["boq", size].trainable_params for size in (SIZE, (64, 96))]
    assert boq[1] - boq[0] == 24 - 6  # ICSA's spatial weight alone


TABLE = (
    "tables: {table10: {backbones: [vgg16], attentions: [none, icsa], blocks: [last],\n"
    "                  aggregations: [netvlad, gem, mixvpr, boq]}}\n"
)


def test_a_table_with_the_modern_aggregators_is_planned_without_their_centroids(tmp_path):
    workdir = scratch_workdir(tmp_path / "work")
    (workdir / "modern.yaml").write_text(TABLE)
    result = snakemake(
        workdir, "-n", "-p", "results/table10.csv", config="config/tiny.yaml modern.yaml"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    suffixes = ("", "-gem", "-mixvpr", "-boq")
    ids = {f"pitts30k-vgg16-{a}{s}-b5-s0" for a in ("none", "icsa") for s in suffixes}
    assert planned_runs(result.stdout) == ids
    counts = job_counts(result.stdout)
    assert counts["train"] == counts["extract"] == counts["evaluate"] == 8
    assert counts["kmeans"] == 1  # NetVLAD's only
    jobs = re.findall(r"rule train:\n\s+input: ([^\n]*)\n\s+output: results/runs/([^/]+)/",
                      result.stdout)  # fmt: skip
    assert {run for _, run in jobs} == ids
    for line, run in jobs:
        assert ("results/centroids/" in line) == (run.count("-") == 4), (run, line)


def test_a_killed_boq_run_resumes_bit_identically(tiny_city, tmp_path, monkeypatch):
    # BoQ, whose attention layers are the likelier to hide a nondeterminism (MixVPR: Linears).
    aggregation = "boq"
    root, _ = tiny_city
    spec = RunSpec("pitts30k", ModelSpec("vgg16", "icsa", 4, (32, 32), lowest_trained_block="none",
                                         aggregation=aggregation),
                   TrainSettings(**{**QUICK, "epochs": 2}), 0)  # fmt: skip
    inputs, options = RunInputs(root, None), RunOptions(device="cpu", threads=1)
    train_run(spec, inputs, tmp_path / "straight", options)
    with killed_in_epoch_2(after_steps=1), pytest.raises(KeyboardInterrupt):
        train_run(spec, inputs, tmp_path / "resumed", options)
    killed = torch.load(tmp_path / "resumed" / "state" / "checkpoint_last.pt", weights_only=True)
    assert killed["epoch"] == 1  # killed inside epoch 2: resumed from epoch 1's state
    train_run(spec, inputs, tmp_path / "resumed", options)
    a, b = (torch.load(tmp_path / run / "state" / "checkpoint_last.pt", weights_only=True)
            for run in ("straight", "resumed"))  # fmt: skip
    assert a["epoch"] == b["epoch"] == 2 and a["model_state"].keys() == b["model_state"].keys()
    assert any(k.startswith(f"{aggregation}.") for k in a["model_state"])
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
