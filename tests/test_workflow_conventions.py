"""Evaluation conventions chosen in config, through real Snakemake (issue: modern benchmarks):

- a dataset in the ``msls`` layout (MSLS-val's official queries and positive lists) is an
  evaluation set of a Pittsburgh-trained run, whole (``msls-val``) and per city
  (``msls-val-cph``: that city's queries against that city's database);
- ``datasets.<name>.policy`` reaches ``icsa evaluate --policy``; an unknown name and an msls
  training dataset are refused at parse time, naming the key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from icsa.evaluate.policy import POLICIES
from tests.helpers.workflow import ROOT, scratch_workdir, snakemake
from tests.test_msls import write_msls

pytestmark = pytest.mark.slow
RUN = "pitts30k-vgg16-none-b5-s0"


def _overlay(workdir: Path, extra: str = "") -> str:
    write_msls(workdir / "msls", np.random.default_rng(7))
    (workdir / "msls.yaml").write_text(
        f"datasets:\n  msls: {{root: msls, layout: msls{extra}}}\nevalsets: {{msls: msls-val}}\n"
    )
    return "config/tiny.yaml msls.yaml"


def test_msls_val_whole_and_per_city_through_the_workflow(tmp_path):
    workdir = scratch_workdir(tmp_path)
    config = _overlay(workdir)
    targets = [f"results/metrics/{RUN}/msls-val.json", f"results/metrics/{RUN}/msls-val-cph.json"]
    done = snakemake(workdir, "--cores", "2", *targets, config=config)
    assert done.returncode == 0, done.stdout[-4000:]
    whole, cph = (json.loads((workdir / t).read_text()) for t in targets)
    assert whole["ground_truth"] == cph["ground_truth"] == "index-lists"
    # write_msls's official subset: 8 queries, 4 of them in cph (query indices 0, 2, 3, 5).
    assert whole["num_q"] == 8 and cph["num_q"] == 4
    assert whole["num_db"] == 18 and cph["num_db"] == 8  # both cities' database; cph's alone
    # The per-city split ranks cph's database only: it holds every positive of a cph query, so
    # dropping the other city's images can only move a first positive up.
    assert whole["per_city"]["cph"]["num_q"] == 4
    ranked_whole = whole["per_city"]["cph"]["recalls"]
    assert all(cph["recalls"][n] >= ranked_whole[n] for n in cph["recalls"])


def test_a_configured_policy_reaches_the_evaluation(tmp_path):
    workdir = scratch_workdir(tmp_path)
    config = _overlay(workdir, ", policy: plain")
    target = f"results/metrics/{RUN}/msls-val.json"
    done = snakemake(workdir, "-n", "-p", "--cores", "2", target, config=config)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "--split val --policy plain" in done.stdout
    # Its check reads the user's folder, not the synthetic city generated beside it.
    assert re.search(r"rule check_dataset:\n\s+input: msls\n\s+output: results/datasets/msls",
                     done.stdout), done.stdout[-3000:]  # fmt: skip
    assert "--policy" not in done.stdout.split("icsa evaluate")[0]  # only evaluate takes it
    (workdir / "bad.yaml").write_text("datasets: {msls: {policy: nordland5}}\n")
    done = snakemake(workdir, "-n", target, config=f"{config} bad.yaml")
    assert done.returncode != 0 and "nordland5" in done.stdout
    (workdir / "train.yaml").write_text("dataset: msls\n")
    done = snakemake(workdir, "-n", target, config=f"{config} train.yaml")
    assert done.returncode != 0
    assert "datasets.msls.layout = 'msls'; expected a layout with a train split" in done.stdout


def test_the_schema_names_every_policy_and_layout():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    entry = schema["properties"]["datasets"]["additionalProperties"]["properties"]
    assert entry["policy"]["enum"] == list(POLICIES)
    from icsa.data.layouts import LAYOUT_KINDS

    assert entry["layout"]["enum"] == list(LAYOUT_KINDS)
