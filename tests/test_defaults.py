"""One default per setting: the workflow, the CLI and the library agree on every step setting.

For each key of the config sections kmeans, extract, evaluate and efficiency (icsa.step_settings),
of train (TrainSettings) and the top-level gpu_lock_dir, the value a run gets when nothing sets
it is compared in three places: the workflow (the key removed from config/config.yaml, the JSON
schema's validator filling what it fills, then icsa.pipeline's accessor), the CLI (the argparse
default of the step's flag, from the real parser), and the library function's default.
The top-level `device` is not one setting in two places: the workflow's (cpu) decides whether
GPU rules declare and lock a GPU, and passes --device to every job; a hand run's --device auto
takes what the machine has.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import inspect
import re
from typing import Any

import pytest
import yaml
from snakemake.utils import validate

from icsa import pipeline
from icsa.cli import build_parser
from icsa.errors import InputError
from icsa.step_settings import STEP_SETTINGS, ExtractSettings, KMeansSettings
from icsa.train.settings import TrainSettings
from tests.helpers.workflow import ROOT

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
KEYS = [(section, f.name) for section, cls in STEP_SETTINGS.items()
        for f in dataclasses.fields(cls)]  # fmt: skip


def subcommand(*names: str):
    """The argparse parser of ``icsa <names...>``, from the real CLI."""
    parser = build_parser()
    for name in names:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    return parser


def field_default(cls: type, key: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(cls)}[key]


def workflow_default(section: str, key: str) -> Any:
    """What the workflow uses when the config leaves ``section.key`` out."""
    config = copy.deepcopy(CONFIG)
    config.get(section, {}).pop(key, None)
    validate(config, str(SCHEMA))  # fills the schema's defaults, as the Snakefile does
    if section == "train":
        return getattr(TrainSettings.from_dict(config["train"], "train"), key)
    return getattr(pipeline.step_settings(config, section), key)


def signature_default(function, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def library_defaults(section: str) -> dict[str, Any]:
    """Each key's default in the library functions that run the step (one value per place)."""
    if section == "kmeans":
        from icsa.train.kmeans import compute_centroids

        settings = signature_default(compute_centroids, "settings")
        return {f.name: [getattr(settings, f.name)] for f in dataclasses.fields(KMeansSettings)}
    if section == "extract":
        from icsa.evaluate.extract import extract_descriptors, extract_in_memory, iter_descriptors

        functions = (extract_descriptors, extract_in_memory, iter_descriptors)
        return {
            "batch_size": [signature_default(f, "batch_size") for f in functions],
            "workers": [signature_default(f, "num_workers") for f in functions],
            "dtype": [signature_default(f, "dtype") for f in functions[:2]],
            # The library takes fast_inference resolved for the device: False is "off".
            "fast_inference": [
                "off" if signature_default(f, "fast") is False else "on or auto" for f in functions
            ],
        }
    if section == "evaluate":
        from icsa.analysis.retrieval_examples import build_examples
        from icsa.evaluate.metrics import evaluate_split
        from icsa.evaluate.recall import recall_at_n, retrieve

        # The figure of retrieved examples marks hits with the same radius (its rule passes
        # evaluate.threshold; `icsa analysis retrieval` by hand defaults to it).
        figure = subcommand("analysis", "retrieval").get_default("threshold")
        return {
            "ns": [tuple(signature_default(f, "ns")) for f in (evaluate_split, recall_at_n)],
            "threshold": [signature_default(f, "threshold")
                          for f in (evaluate_split, recall_at_n, retrieve, build_examples)]
                         + [figure],
        }  # fmt: skip
    if section == "efficiency":
        from icsa.analysis.efficiency import measure_modules

        keys = [f.name for f in dataclasses.fields(STEP_SETTINGS["efficiency"])]
        return {key: [signature_default(measure_modules, key)] for key in keys}
    raise AssertionError(section)


@pytest.mark.parametrize(("section", "key"), KEYS)
def test_workflow_cli_and_library_default_agree(section, key):
    default = field_default(STEP_SETTINGS[section], key)
    cli = subcommand(section).get_default(key)
    library = library_defaults(section)[key]
    found = {"workflow": workflow_default(section, key), "cli": cli,
             **{f"library {i}": value for i, value in enumerate(library)}}  # fmt: skip
    if isinstance(default, tuple):  # --ns takes a list; a tuple default is the same numbers
        found = {place: tuple(value) for place, value in found.items()}
    assert found == dict.fromkeys(found, default), f"{section}.{key}: default {default!r}"


@pytest.mark.parametrize("section", [*STEP_SETTINGS, "train"])
def test_the_schema_has_the_keys_and_no_competing_default(section):
    schema = yaml.safe_load(SCHEMA.read_text())["properties"][section]
    cls = STEP_SETTINGS.get(section, TrainSettings)
    fields = {f.name for f in dataclasses.fields(cls)}
    if section != "train":  # train lists only the keys whose range it checks
        assert set(schema["properties"]) == fields, section
        assert schema.get("default") == {}  # a config may leave the section out
    for key, rule in schema["properties"].items():
        assert key in fields, f"{section}.{key}: no such setting"
        assert "default" not in rule, f"{section}.{key}: the schema restates a default"


def test_train_defaults_are_the_recipe_in_the_workflow():
    """icsa train takes its recipe whole (RunSpec), so only the workflow side can differ."""
    for field in dataclasses.fields(TrainSettings):
        assert workflow_default("train", field.name) == field.default, field.name


def test_gpu_lock_dir_is_the_same_for_the_workflow_and_icsa_gpu_run():
    from icsa.gpu import DEFAULT_LOCK_DIR

    config = copy.deepcopy(CONFIG)
    del config["gpu_lock_dir"]
    validate(config, str(SCHEMA))
    assert config["gpu_lock_dir"] == DEFAULT_LOCK_DIR
    assert subcommand("gpu", "run").get_default("lock_dir") == DEFAULT_LOCK_DIR


def test_rules_read_step_settings_through_the_accessor():
    """config["extract"]["dtype"] in a rule would skip the defaults (a KeyError when unset)."""
    sections = "|".join(STEP_SETTINGS)
    for path in (ROOT / "workflow").rglob("*.smk"):
        direct = re.findall(rf"config\[[\"']({sections})[\"']\]", path.read_text())
        assert not direct, f"{path.name} reads config[{direct[0]!r}] directly"


def test_a_config_without_the_step_sections_runs_on_the_defaults():
    config = copy.deepcopy(CONFIG)
    for section in STEP_SETTINGS:
        del config[section]
    validate(config, str(SCHEMA))
    pipeline.check(config)
    assert pipeline.step_settings(config, "extract") == ExtractSettings()
    assert pipeline.step_settings(config, "kmeans") == KMeansSettings()


@pytest.mark.parametrize(
    ("section", "value", "needles"),
    [
        ("extract", {"worker": 2}, ["extract: unknown keys ['worker']", "'workers'"]),
        ("kmeans", {"iteration": 5}, ["kmeans: unknown keys ['iteration']", "'iterations'"]),
        ("evaluate", {"n": [1]}, ["evaluate: unknown keys ['n']", "'ns'"]),
        ("efficiency", {"repeat": 3}, ["efficiency: unknown keys ['repeat']", "'repeats'"]),
        ("kmeans", {"iterations": 0}, ["kmeans.iterations = 0", "integer >= 1"]),
        ("extract", {"fast_inference": "fast"}, ["extract.fast_inference = 'fast'", "'auto'"]),
    ],
)  # fmt: skip
def test_a_bad_step_setting_names_the_key(section, value, needles):
    """pipeline.check (also for callers without the schema) names the key and the valid ones."""
    config = copy.deepcopy(CONFIG)
    validate(config, str(SCHEMA))  # fills the other sections' defaults
    config[section] = value
    with pytest.raises(InputError) as err:
        pipeline.check(config)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))
