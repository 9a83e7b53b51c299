"""An aggregator from a plugin: one file outside the package plus one table entry (issue 28).

tests/plugins/mac_aggregator.py registers MAC (global max pooling, no centroids) the way a user
would: a module on PYTHONPATH named under the config's `plugins:`. The real Snakemake plans its
runs (run ids with its suffix, no k-means for them); in this process it builds, runs and names
its model like the built-in aggregators.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch

from icsa import registry, spec
from icsa.errors import InputError
from icsa.models import build_model
from tests.helpers.workflow import job_counts, planned_runs, scratch_workdir, snakemake

PLUGINS = Path(__file__).parent / "plugins"
PLUGIN = "mac_aggregator"
# Table 7's modules under NetVLAD (which starts from centroids) and MAC (which does not).
TABLE = (
    f"plugins: [{PLUGIN}]\n"
    "tables: {table10: {backbones: [vgg16], attentions: [none, icsa], blocks: [last],\n"
    "                  aggregations: [netvlad, mac]}}\n"
)


@pytest.fixture
def on_pythonpath(monkeypatch):
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])
    )


@pytest.fixture
def mac(monkeypatch):
    """The plugin imported here; the registry and sys.modules as they were afterwards."""
    before = dict(registry.AGGREGATORS)
    monkeypatch.syspath_prepend(str(PLUGINS))
    registry.load_plugins([PLUGIN])
    yield registry.AGGREGATORS["mac"]
    registry.AGGREGATORS.clear()
    registry.AGGREGATORS.update(before)
    sys.modules.pop(PLUGIN, None)


def train_inputs(output: str) -> dict[str, str]:
    """Run id → the input line of its planned training job."""
    jobs = re.findall(r"rule train:\n\s+input: ([^\n]*)\n\s+output: results/runs/([^/]+)/", output)
    return {run: inputs for inputs, run in jobs}


def test_a_plugin_aggregator_is_planned_in_a_table(tmp_path, on_pythonpath):
    workdir = scratch_workdir(tmp_path / "work")
    (workdir / "mac.yaml").write_text(TABLE)
    result = snakemake(
        workdir, "-n", "-p", "results/table10.csv", config="config/tiny.yaml mac.yaml"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    ids = {f"pitts30k-vgg16-{a}{s}-b5-s0" for a in ("none", "icsa") for s in ("", "-mac")}
    assert planned_runs(result.stdout) == ids
    counts = job_counts(result.stdout)
    assert counts["train"] == counts["extract"] == counts["evaluate"] == 4
    assert counts["kmeans"] == 1  # NetVLAD's, shared by none and icsa; none for MAC
    inputs = train_inputs(result.stdout)
    assert set(inputs) == ids
    for run, line in inputs.items():
        assert ("results/centroids/" in line) == (not run.endswith("-mac-b5-s0")), (run, line)
    assert '"aggregation": "mac"' in result.stdout  # the training job's RunSpec
    # The names are the registry's: without the plugin, `mac` is unknown and the check lists
    # the registered aggregators.
    (workdir / "bare.yaml").write_text(TABLE.replace(f"plugins: [{PLUGIN}]\n", ""))
    result = snakemake(workdir, "-n", "results/table10.csv", config="config/tiny.yaml bare.yaml")
    assert result.returncode != 0 and "Job stats" not in result.stdout
    assert (
        "tables.table10.aggregations = 'mac'; expected one of ['netvlad', 'gem', 'mixvpr', 'boq']"
        in result.stdout
    )


def test_the_plugin_aggregator_builds_runs_and_names_its_model(mac):
    assert mac.suffix == "-mac" and not registry.needs_centroids("mac")
    model = build_model("vgg16", "icsa", 4, (32, 48), aggregation="mac").eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        out = model(x)
        local = model.local_features(x)
    assert out.shape == (2, 512) == (2, model.descriptor_dim)
    torch.testing.assert_close(out, torch.nn.functional.normalize(local.amax(dim=(2, 3))))
    assert model.pool is model.mac and model.config["aggregation"] == "mac"
    assert not any(k.startswith(("netvlad.", "gem.")) for k in model.state_dict())
    # Its run ids, labels and model spec, as for the built-in aggregators.
    run = spec.run_id("pitts30k", "vgg16", "icsa", "5", 0, "mac")
    assert run == "pitts30k-vgg16-icsa-mac-b5-s0"
    assert spec.parse_run_id(run)["aggregation"] == "mac"
    assert spec.parse_run_id("pitts30k-vgg16-icsa-gem-b5-s0")["aggregation"] == "gem"
    assert spec.parse_run_id("pitts30k-vgg16-icsa-b5-s0")["aggregation"] == "netvlad"
    assert registry.network_label("vgg16", "icsa", "mac") == "VGG16+ICSA (MAC)"
    assert registry.pool_pattern() == "(-gem|-mixvpr|-boq|-mac)?"
    model_spec = spec.ModelSpec("vgg16", "icsa", 4, (32, 48), aggregation="mac")
    assert spec.ModelSpec.from_dict(model_spec.to_dict()) == model_spec


def test_without_the_plugin_its_run_ids_and_names_are_unknown():
    assert "mac" not in registry.AGGREGATORS
    with pytest.raises(InputError, match="expected"):
        spec.parse_run_id("pitts30k-vgg16-icsa-mac-b5-s0")
    with pytest.raises(
        InputError, match="aggregation='mac': expected one of netvlad, gem, mixvpr, boq"
    ):
        spec.ModelSpec("vgg16", "icsa", 4, (32, 48), aggregation="mac")


def test_built_in_aggregators_keep_their_run_ids():
    assert registry.pool_pattern() == "(-gem|-mixvpr|-boq)?"  # the Snakefile's {pool} wildcard
    suffixes = {"netvlad": "", "gem": "-gem", "mixvpr": "-mixvpr", "boq": "-boq"}
    assert {n: a.suffix for n, a in registry.AGGREGATORS.items()} == suffixes
    assert [n for n, a in registry.AGGREGATORS.items() if a.needs_centroids] == ["netvlad"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [(dict(name="gem"), "aggregator 'gem' is registered already"),
     (dict(name="avg", suffix=""), "suffix='' marks the run ids of 'netvlad' already"),
     (dict(name="avg", suffix="-gem"), "suffix='-gem' marks the run ids of 'gem' already"),
     (dict(name="avg", suffix="_avg"), "suffix='_avg'; expected '-' and lowercase"),
     (dict(name="Avg"), "aggregator name 'Avg': expected lowercase letters and digits"),
     (dict(name="avg", arguments=("depth",)), "arguments ['depth']; expected some of")],
    ids=["name-taken", "no-suffix-taken", "suffix-taken", "bad-suffix", "bad-name", "arguments"],
)  # fmt: skip
def test_a_bad_aggregator_entry_is_refused(entry, message):
    before = dict(registry.AGGREGATORS)
    with pytest.raises(InputError, match=re.escape(message)):
        fields = {"label": "Avg", "build": "torch.nn:Identity", "needs_centroids": False, **entry}
        registry.register_aggregator(registry.AggregatorSpec(**fields))
    assert before == registry.AGGREGATORS
