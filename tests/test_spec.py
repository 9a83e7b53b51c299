"""The one specification: registries, ModelSpec/RunSpec, run ids, paths and the run fingerprint."""

from __future__ import annotations

import shutil
import sys

import pytest

from icsa import pipeline, registry, spec
from icsa.errors import InputError
from icsa.io import file_digest
from icsa.train.settings import TrainSettings

CONFIG_MODEL = {"image_size": [32, 48], "num_clusters": 8, "weights": "none"}


def _model(**changes) -> spec.ModelSpec:
    fields = dict(backbone="vgg16", attention="icsa", num_clusters=8, image_size=(32, 48),
                  lowest_trained_block="5")  # fmt: skip
    return spec.ModelSpec(**{**fields, **changes})


def test_registry_import_is_torch_free_and_lists_names_on_error():
    code = (
        "import sys, icsa.registry, icsa.spec, icsa.pipeline, icsa.centroids;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(ValueError) as err:
        registry.attention_spec("gcnet")
    for name in registry.ATTENTIONS:
        assert name in str(err.value)
    with pytest.raises(InputError, match="vgg16, resnet18, resnet50, alexnet"):
        registry.backbone_spec("vgg19")


@pytest.mark.parametrize("name", sorted(registry.BACKBONES))
def test_every_backbone_entry_is_consistent_with_torchvision(name):
    from icsa.models import build_backbone, feature_shape_for

    entry = registry.BACKBONES[name]
    net = build_backbone(name)
    assert net.num_blocks == entry.num_blocks == len(net.blocks)
    side = 16 * entry.stride
    channels, h, w = feature_shape_for(name, (side, side))
    assert channels == entry.out_channels and abs(h - 16) <= 1 and h == w  # nominal stride


def test_registering_checks_names_and_refuses_duplicates():
    with pytest.raises(InputError, match="registered already"):
        registry.register_attention(registry.ATTENTIONS["icsa"])
    for bad in ("Gate", "my-gate", "gate_2", ""):
        with pytest.raises(InputError, match="lowercase letters and digits"):
            registry.register_attention(registry.AttentionSpec(bad, "G", "x:y", True))
    with pytest.raises(InputError, match="arguments"):
        registry.AttentionSpec("gate", "G", "x:y", True, arguments=("depth",))


def test_labels_come_from_the_registry():
    assert registry.network_label("vgg16", "none") == "VGG16"
    assert registry.network_label("resnet18", "se") == "ResNet18+SENet"
    assert registry.module_label("icsa-folded") == "ICSA (folded)"
    with pytest.raises(InputError):
        registry.network_label("vgg16", "senet")


def test_model_spec_checks_against_the_registry():
    assert _model().lowest_trained_block == "5" and _model(lowest_trained_block=3).image_size == (
        32,
        48,
    )
    with pytest.raises(InputError, match="none or 1..5 for vgg16"):
        _model(lowest_trained_block="6")
    with pytest.raises(InputError, match="at least 31×31 for alexnet"):
        _model(backbone="alexnet", image_size=(24, 32))
    with pytest.raises(InputError, match="attention='senet'"):
        _model(attention="senet")
    with pytest.raises(InputError, match="num_clusters=1"):
        _model(num_clusters=1)
    with pytest.raises(InputError, match=r"unknown keys \['image_sizes'\]"):
        spec.ModelSpec.from_dict({**_model().to_dict(), "image_sizes": [1, 2]})


def test_run_spec_round_trips_through_json_and_names_its_files():
    run = spec.RunSpec("pitts30k", _model(), TrainSettings(epochs=3), seed=2)
    again = spec.RunSpec.from_dict(__import__("json").loads(run.to_json()))
    assert again == run
    assert run.id == "pitts30k-vgg16-icsa-b5-s2"
    parts = {"dataset": "pitts30k", "backbone": "vgg16", "attention": "icsa", "block": "5",
             "seed": "2", "aggregation": "netvlad"}  # fmt: skip
    assert spec.parse_run_id(run.id) == parts
    assert spec.run_id(**{**spec.parse_run_id(run.id)}) == run.id
    assert spec.checkpoint_best(run.id) == f"results/runs/{run.id}/checkpoint_best.pt"
    # The same function gives the Snakemake pattern when called with the wildcard pattern.
    pattern = spec.metrics_file(spec.RUN_ID, "{evalset}")
    # Snakemake's wildcards hold the id's suffix ({pool}: "" for NetVLAD), not the aggregation.
    wildcards = spec.parse_run_id(run.id)
    wildcards["pool"] = registry.aggregator_spec(wildcards.pop("aggregation")).suffix
    assert pattern.format(**wildcards, evalset="x-test") == spec.metrics_file(run.id, "x-test")
    with pytest.raises(InputError, match="expected .dataset.-.backbone."):
        spec.parse_run_id("pitts30k-vgg16-icsa-5-s2")
    with pytest.raises(InputError, match="recipe: unknown keys"):
        spec.RunSpec.from_dict({**run.to_dict(), "recipe": {"epoch": 3}})


def test_fingerprint_follows_content_not_paths_and_ignores_resumable_keys(tmp_path):
    a, b = tmp_path / "a", tmp_path / "moved" / "b"
    a.mkdir()
    (a / "centroids.npz").write_bytes(b"centroids")
    (a / "train.mat").write_bytes(b"dbstruct")
    shutil.copytree(a, b)
    run = spec.RunSpec("pitts30k", _model(), TrainSettings(epochs=3), seed=0)

    def fp(run, root):
        files = {"centroids": root / "centroids.npz", "train": root / "train.mat"}
        return run.fingerprint({role: file_digest(path) for role, path in files.items()})

    assert fp(run, a) == fp(run, b)  # a moved checkout is the same run
    longer = spec.RunSpec("pitts30k", _model(), TrainSettings(epochs=9, patience=2), seed=0)
    assert fp(longer, a) == fp(run, a)
    other_lr = spec.RunSpec("pitts30k", _model(), TrainSettings(epochs=3, lr=0.1), seed=0)
    assert spec.fingerprint_differences(fp(run, a), fp(other_lr, a)) == [
        "recipe.lr: was 0.0001, now 0.1"
    ]
    (b / "train.mat").write_bytes(b"another dbstruct")
    diffs = spec.fingerprint_differences(fp(run, a), fp(run, b))
    assert len(diffs) == 1 and diffs[0].startswith("inputs.train:")


def test_run_spec_from_config_uses_the_run_seed_for_the_init():
    config = {"model": CONFIG_MODEL, "train": {"epochs": 2}}
    run = pipeline.run_spec(config, "tokyotm-resnet18-se-bnone-s4")
    assert run.model == spec.ModelSpec("resnet18", "se", 8, (32, 48), "none", 4, "none")
    assert run.recipe == TrainSettings(epochs=2) and run.seed == 4 and run.dataset == "tokyotm"


def test_a_backbone_is_one_registry_entry():
    """ResNet-34 registered as one BackboneSpec: built, cut, sized and validated like the rest."""
    from icsa.models import build_model

    resnet18 = registry.BACKBONES["resnet18"]
    entry = registry.BackboneSpec(
        "resnet34", "ResNet34", "resnet34", "ResNet34_Weights", resnet18.blocks,
        out_channels=512, stride=32, min_image_side=1, dropped_prefixes=("fc.",),
    )  # fmt: skip
    registry.register_backbone(entry)
    try:
        model = build_model("resnet34", "icsa", 4, (64, 64), "4", "none", 0)
        assert model.feature_shape == (512, 2, 2) and model.backbone.num_blocks == 5
        trained = [i for i, b in enumerate(model.backbone.blocks)
                   if all(p.requires_grad for p in b.parameters())]  # fmt: skip
        assert trained == [3, 4]
        config = {"model": CONFIG_MODEL, "train": {}}
        assert (
            pipeline.run_spec(config, "pitts30k-resnet34-icsa-b4-s0").model.backbone == "resnet34"
        )
        assert registry.network_label("resnet34", "se") == "ResNet34+SENet"
        with pytest.raises(InputError, match="none or 1..5 for resnet34"):
            _model(backbone="resnet34", lowest_trained_block="6")
    finally:
        del registry.BACKBONES["resnet34"]


REFUSED = "refused"


def _outcome(make):
    try:
        return make()
    except InputError:
        return REFUSED


@pytest.mark.parametrize(
    ("block", "run", "config"),
    [("none", "none", "none"), (None, "none", "none"), ("1", "1", "1"), (3, "3", "3"),
     ("5", "5", "5"), ("last", REFUSED, "5"), ("6", REFUSED, REFUSED), ("0", REFUSED, REFUSED),
     ("x", REFUSED, REFUSED)],
)  # fmt: skip
def test_one_block_check_for_configs_specs_and_backbones(block, run, config):
    """registry.check_block is the one rule: a config's `blocks` (which may say last), a
    ModelSpec and the built backbone accept and refuse the same values."""
    from icsa.models.backbones import parse_lowest_trained_block  # torch

    assert _outcome(lambda: pipeline.normalise_block("vgg16", block, "tables.t.blocks")) == config
    assert _outcome(lambda: _model(lowest_trained_block=block).lowest_trained_block) == run
    built = _outcome(lambda: parse_lowest_trained_block(block, "vgg16"))
    assert built == (REFUSED if run == REFUSED else None if run == "none" else int(run))
    assert _outcome(lambda: registry.check_block("vgg16", block)) == run
