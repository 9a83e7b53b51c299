"""A bad config value fails before any job starts, naming the key and the allowed values."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from icsa.models import ATTENTIONS, BACKBONES
from tests.test_workflow_dryrun import ROOT, scratch_workdir, snakemake

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def merged(*names: str) -> dict:
    """config.yaml with --configfile files merged over it, as Snakemake does (nested dicts)."""

    def update(base: dict, new: dict) -> dict:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                update(base[key], value)
            else:
                base[key] = value
        return base

    config = load("config.yaml")
    for name in names:
        update(config, load(name))
    return config


@pytest.mark.parametrize("extra", [(), ("tiny.yaml",), ("pittsburgh.yaml",)])
def test_shipped_configs_are_valid(extra):
    config = merged(*extra)
    validate(config, str(SCHEMA))
    assert config["extract"]["dtype"] in ("float32", "float16")  # defaults were filled in


def test_schema_names_equal_the_model_registries():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert tuple(schema["definitions"]["attention"]["enum"]) == ATTENTIONS
    assert tuple(schema["definitions"]["backbone"]["enum"]) == BACKBONES


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda c: c["tables"]["table1"]["attentions"].append("senet"),
         ["'senet' is not one of", str(list(ATTENTIONS)), "table1", "attentions"]),
        (lambda c: c["tables"]["table4"]["backbones"].append("vgg19"),
         ["'vgg19' is not one of", str(list(BACKBONES)), "table4", "backbones"]),
        (lambda c: c["train"].update(lr=-0.001),
         ["-0.001", "exclusiveMinimum", "'lr'"]),
        (lambda c: c.update(device="tpu"),
         ["'tpu' is not one of ['cpu', 'cuda']", "device"]),
        (lambda c: c["tables"]["table5"]["blocks"].append("six"),
         ["'six'", "table5", "blocks"]),
    ],
)  # fmt: skip
def test_schema_errors_name_key_value_and_allowed(edit, needles):
    config = copy.deepcopy(load("config.yaml"))
    edit(config)
    with pytest.raises(WorkflowError) as err:
        validate(config, str(SCHEMA))
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def write_override(workdir: Path, text: str) -> str:
    (workdir / "bad.yaml").write_text(text)
    return "config/tiny.yaml bad.yaml"


def assert_failed_before_any_job(workdir: Path, result) -> None:
    assert result.returncode != 0
    assert "Building DAG" not in result.stdout and "Job stats" not in result.stdout
    assert not (workdir / "results").exists() and not (workdir / "data").exists()


def test_unknown_attention_fails_before_any_job(tmp_path):
    workdir = scratch_workdir(tmp_path)
    bad = write_override(workdir, "tables: {table5: {attentions: [none, icsa2]}}\n")
    result = snakemake(workdir, "--cores", "2", "results/table5.csv", config=bad)
    assert_failed_before_any_job(workdir, result)
    assert "'icsa2' is not one of" in result.stdout and str(list(ATTENTIONS)) in result.stdout


def test_missing_data_root_fails_before_any_job(tmp_path):
    workdir = scratch_workdir(tmp_path)
    bad = write_override(
        workdir, "synthetic: null\ndatasets: {pitts30k: {root: /nonexistent/pitts}}\n"
    )
    result = snakemake(workdir, "--cores", "2", "results/table5.csv", config=bad)
    assert_failed_before_any_job(workdir, result)
    assert "datasets.pitts30k.root = '/nonexistent/pitts'" in result.stdout
    assert "expected an existing folder in the NetVLAD layout" in result.stdout


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("train: {epoch: 3}\n", ["unknown keys ['epoch']", "valid keys are", "'epochs'"]),
        ("train: {neg_kept: 0}\n", ["neg_kept=0", "expected an integer >= 1"]),
        ("model: {num_clusters: 1}\n", ["num_clusters", "minimum", "2"]),
        (
            "model: {image_size: [8, 8]}\n",
            ["model.image_size = [8, 8]", "at least 31×31 for alexnet"],
        ),
    ],
    ids=["typo", "no-negatives", "one-cluster", "tiny-images"],
)
def test_recipe_errors_fail_before_any_job(tmp_path, override, needles):
    # Issue 16: these passed validation and failed only in the first training job, after data
    # preparation and k-means had run.
    workdir = scratch_workdir(tmp_path)
    result = snakemake(workdir, "--cores", "2", "results/table5.csv",
                       config=write_override(workdir, override))  # fmt: skip
    assert_failed_before_any_job(workdir, result)
    for needle in needles:
        assert needle in result.stdout, (needle, result.stdout[-2000:])
