"""A bad config value fails before any job starts, naming the key and the allowed values."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from icsa import pipeline, registry
from icsa.errors import InputError
from icsa.models import ATTENTIONS, BACKBONES
from tests.helpers.workflow import ROOT, job_counts, scratch_workdir, snakemake

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
    assert pipeline.step_settings(config, "extract").dtype in ("float32", "float16")


def test_the_schema_lists_no_names_the_registries_own():
    # Names are checked against icsa.registry (which plugins extend), not a copy in the schema.
    schema = yaml.safe_load(SCHEMA.read_text())
    for kind in ("attention", "backbone", "aggregation"):
        assert "enum" not in schema["definitions"][kind]
    assert "num_blocks" not in schema["properties"]  # comes from each BackboneSpec


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda c: c["tables"]["table1"]["attentions"].append("senet"),
         ["tables.table1.attentions = 'senet'", str(list(ATTENTIONS))]),
        (lambda c: c["tables"]["table4"]["backbones"].append("vgg19"),
         ["tables.table4.backbones = 'vgg19'", str(list(BACKBONES))]),
        (lambda c: c["tables"]["table5"]["blocks"].append(6),
         ["tables.table5.blocks = '6'", "none, last or 1..5 for vgg16"]),
        (lambda c: c.update(figures={"attention": ["icsa"]}),
         ["figures: unknown keys ['attention']", "'attentions'"]),
        (lambda c: c.update(figures={"retrieval_attention": "gem"}),
         ["figures.retrieval_attention = 'gem'"]),
        (lambda c: c["synthetic"]["settings"].update(image_hieght=3),
         ["unknown keys ['image_hieght']", "image_height"]),
        (lambda c: c["train"].update(epoch=3),
         ["train: unknown keys ['epoch']", "'epochs'"]),
        # Nothing lost, round two: two names of one block built a duplicated row.
        (lambda c: c["tables"]["table1"]["blocks"].append(5),
         ["tables.table1.blocks = 5", "listed once", "block 5 of vgg16"]),
    ],
)  # fmt: skip
def test_parse_time_checks_name_the_key_and_the_valid_values(edit, needles):
    config = copy.deepcopy(load("config.yaml"))
    edit(config)
    validate(config, str(SCHEMA))  # the schema lets these through: shapes are right
    with pytest.raises(InputError) as err:
        pipeline.check(config)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [("table5", "attentions", "icsa"), ("table4", "backbones", "vgg16"),
     ("table7", "aggregations", "gem"), ("table2", "attentions", "se")],
)  # fmt: skip
def test_a_value_listed_twice_is_named_by_the_schema_and_the_check(table, key, value):
    """Nothing lost, round two: a table listing an attention twice built a duplicated row."""
    config = copy.deepcopy(load("config.yaml"))
    validate(config, str(SCHEMA))  # fills in the defaults
    config["tables"][table][key].append(value)
    with pytest.raises(WorkflowError, match="non-unique"):
        validate(copy.deepcopy(config), str(SCHEMA))
    # The library's own check, for callers without the workflow's schema.
    with pytest.raises(InputError) as err:
        pipeline.check(config)
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"config error: tables.{table}.{key} = {value!r}; expected"), first
    assert "listed once" in first


def test_every_rule_that_asks_for_resources_may_be_configured():
    config = copy.deepcopy(load("config.yaml"))
    steps = set()
    for rules in (ROOT / "workflow" / "rules").glob("*.smk"):
        steps |= set(re.findall(r'job_resources\("([a-z_]+)"\)', rules.read_text()))
    assert {"train", "figures"} <= steps
    config["resources"].update({step: {"cpus": 1} for step in steps})
    validate(config, str(SCHEMA))


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda c: c["train"].update(lr=-0.001),
         ["-0.001", "exclusiveMinimum", "'lr'"]),
        (lambda c: c["train"].update(optimizer="rmsprop"),
         ["'rmsprop' is not one of ['sgd', 'adam']", "optimizer"]),
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
    assert "tables.table5.attentions = 'icsa2'" in result.stdout
    assert str(list(ATTENTIONS)) in result.stdout


def test_the_papers_config_lints_and_plans_on_a_fresh_clone(tmp_path):
    """No data folders: --lint and -n pass with a warning; the dataset check (the first job
    that reads the data) fails with the same message."""
    workdir = scratch_workdir(tmp_path)
    message = "datasets.pitts30k.root = 'data/pittsburgh': no such folder"
    lint = snakemake(workdir, "--lint", config="config/pittsburgh.yaml")
    assert lint.returncode == 0 and message in lint.stdout, lint.stdout[-3000:]
    plan = snakemake(workdir, "-n", "results/table5.csv", config="config/pittsburgh.yaml")
    assert plan.returncode == 0 and message in plan.stdout, plan.stdout[-3000:]
    assert job_counts(plan.stdout)["train"] == 12
    # Tokyo 24/7 (table8, beyond the paper): the Table 1 models, evaluated on tokyo247-test.
    tokyo = snakemake(workdir, "-n", "results/table8.csv", config="config/pittsburgh.yaml")
    assert tokyo.returncode == 0, tokyo.stdout[-3000:]
    assert job_counts(tokyo.stdout)["evaluate"] == 2 and "check_dataset" in tokyo.stdout
    evaluated = set(re.findall(r"results/metrics/([^/\s]+/[^/\s,]+)\.json", tokyo.stdout))
    assert evaluated == {f"pitts30k-vgg16-{a}-b5-s0/tokyo247-test" for a in ("none", "icsa")}
    run = snakemake(workdir, "--cores", "1", "results/datasets/pitts30k.json",
                    config="config/pittsburgh.yaml")  # fmt: skip
    assert run.returncode != 0
    log = (workdir / "results/logs/check/pitts30k.log").read_text()
    assert message in log and not (workdir / "results/datasets/pitts30k.json").exists()


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("train: {epoch: 3}\n", ["unknown keys ['epoch']", "valid keys are", "'epochs'"]),
        ("train: {neg_kept: 0}\n", ["neg_kept=0", "expected an integer >= 1"]),
        ("model: {num_clusters: 1}\n", ["num_clusters", "minimum", "2"]),
        (
            "model: {image_size: [8, 8]}\n",
            ["image_size=[8, 8]", "at least 31×31 for alexnet"],
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


def test_one_name_grammar_the_schema_and_the_code_share():
    """registry.NAME is written once; the schema (YAML, which cannot import it) spells it in
    every name pattern, and no code writes it again."""
    patterns = re.findall(r'pattern: "([^"]*)"', SCHEMA.read_text())
    names = [p for p in patterns if "[a-z" in p]
    assert len(names) >= 3  # the name definition and the two evaluation-set patterns
    for pattern in names:
        assert "[a-z" not in pattern.replace(registry.NAME, ""), pattern
    sources = [*(ROOT / "icsa").rglob("*.py"), *(ROOT / "workflow").rglob("*.smk"),
               ROOT / "workflow" / "Snakefile"]  # fmt: skip
    assert [p for p in sources if registry.NAME in p.read_text()] == [ROOT / "icsa/registry.py"]
    assert "registry.NAME" in (ROOT / "workflow" / "Snakefile").read_text()


def test_a_tables_kind_decides_its_shape():
    """kind: efficiency (Table 2) lists modules; a run table may omit kind or say runs."""
    config = copy.deepcopy(load("config.yaml"))
    config["tables"]["table1"]["kind"] = "runs"
    config["tables"]["table10"] = {"kind": "efficiency", "attentions": ["icsa", "none"]}
    validate(config, str(SCHEMA))
    assert "evalset" not in config["tables"]["table10"]  # no run-table default filled in
    assert pipeline.tables_of_kind(config, "efficiency") == ["table2", "table10"]
    assert "table10" not in pipeline.run_tables(config) and "table1" in pipeline.run_tables(config)
    # Every efficiency table's modules, once, are measured.
    assert pipeline.efficiency_modules(config) == [
        *config["tables"]["table2"]["attentions"],
        "none",
    ]
    pipeline.check(config)
    config["tables"]["table10"]["attentions"].append("icsa2")  # names checked per kind
    with pytest.raises(InputError, match=r"tables.table10.attentions = 'icsa2'"):
        pipeline.check(config)
    for bad in (
        {"attentions": ["icsa"]},  # no kind: a run table, which lists runs
        {"kind": "efficiency", "attentions": ["icsa"], "blocks": ["last"]},
        {"kind": "tables", "attentions": ["icsa"]},
    ):
        config = copy.deepcopy(load("config.yaml"))
        config["tables"]["table2"] = bad
        with pytest.raises(WorkflowError):
            validate(config, str(SCHEMA))


def test_an_efficiency_table_of_any_name_is_planned_as_one(tmp_path):
    workdir = scratch_workdir(tmp_path)
    extra = "tables: {table10: {kind: efficiency, attentions: [icsa, none]}}\n"
    result = snakemake(workdir, "-n", "-p", "results/table10.csv",
                       config=write_override(workdir, extra))  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {"efficiency": 1, "table": 1}
    assert "--modules ia,icsa,se,cbam,ch,icsa-folded,none " in result.stdout
    assert '"kind": "efficiency", "table": "table10"' in result.stdout
