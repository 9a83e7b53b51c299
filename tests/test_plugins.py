"""Adding an attention module is its class + one registry entry + one table line (issue 13).

The module here lives outside the package, in a plugin the config names under `plugins:`: the
workflow validates it and plans its runs, and the jobs (`icsa train`) import it via
$ICSA_PLUGINS, which each job's shell exports (workflow/rules/common.smk).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from icsa import registry
from icsa.cli import main
from icsa.spec import RunSpec
from tests.helpers.city import QUICK, run_spec
from tests.helpers.workflow import BIN, job_counts, planned_runs, scratch_workdir, snakemake

PLUGIN = '''
"""A learnable per-channel gate, starting at 1 (the identity)."""
import torch
from torch import nn

from icsa.registry import AttentionSpec, register_attention


class ChannelGate(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x):  # [B,C,h,w] -> [B,C,h,w]
        return x * self.weight


register_attention(AttentionSpec("gate", "Gate", ChannelGate, identity_at_init=True,
                                 arguments=("channels",)))
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "mygate.py").write_text(PLUGIN)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    )
    return folder


def test_a_registered_module_is_validated_and_planned(tmp_path, plugin_dir):
    workdir = scratch_workdir(tmp_path / "work")
    table = "tables: {table1: {attentions: [none, icsa, gate]}}\n"
    (workdir / "gate.yaml").write_text("plugins: [mygate]\n" + table)
    result = snakemake(
        workdir, "-n", "-p", "results/table1.csv", config="config/tiny.yaml gate.yaml"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    runs = planned_runs(result.stdout)
    assert "pitts30k-vgg16-gate-b5-s0" in runs and len(runs) == 3
    assert job_counts(result.stdout)["train"] == 3
    assert '"attention": "gate"' in result.stdout  # the job's RunSpec
    # The names are the registry's: a typo lists the registered ones, the plugin's included.
    (workdir / "typo.yaml").write_text(
        "plugins: [mygate]\ntables: {table1: {attentions: [gatee]}}\n"
    )
    result = snakemake(workdir, "-n", "results/table1.csv", config="config/tiny.yaml typo.yaml")
    assert result.returncode != 0 and "tables.table1.attentions = 'gatee'" in result.stdout
    assert "'gate']" in result.stdout and "Job stats" not in result.stdout
    # Without the plugin the name is unknown; a plugin that cannot be imported is named.
    (workdir / "bare.yaml").write_text(table)
    result = snakemake(workdir, "-n", "results/table1.csv", config="config/tiny.yaml bare.yaml")
    assert result.returncode != 0 and "tables.table1.attentions = 'gate'" in result.stdout
    (workdir / "missing.yaml").write_text("plugins: [no_such_plugin]\n")
    result = snakemake(workdir, "-n", "results/table1.csv", config="config/tiny.yaml missing.yaml")
    assert (
        result.returncode != 0 and "plugins: 'no_such_plugin' cannot be imported" in result.stdout
    )


def test_a_job_trains_the_registered_module(tiny_city, tmp_path, plugin_dir):
    """`icsa train` with $ICSA_PLUGINS (what the workflow exports) builds and trains it."""
    root, cents = tiny_city
    spec: RunSpec = run_spec(QUICK)
    data = spec.to_dict()
    data["model"]["attention"] = "gate"
    run = tmp_path / "run"
    env = {**os.environ, "ICSA_PLUGINS": "mygate", "OMP_NUM_THREADS": "1"}
    cmd = [str(BIN / "icsa"), "train", "--spec", json.dumps(data), "--root", str(root),
           "--centroids", str(cents), "--run-dir", str(run), "--no-dvclive"]  # fmt: skip
    result = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["run"] == "pitts30k-vgg16-gate-b5-s0" and summary["epochs"] == 1
    import torch

    state = torch.load(run / "checkpoint_best.pt", weights_only=True)["model_state"]
    assert state["attention.weight"].shape == (1, 512, 1, 1)
    assert not torch.equal(state["attention.weight"], torch.ones(1, 512, 1, 1))  # it trained
    assert "gate" not in registry.ATTENTIONS  # this process never imported the plugin
    assert sys.modules.get("mygate") is None


MARKER = """import os, sys
with open(os.environ["MARKER_FILE"], "a") as marks:
    marks.write(os.path.basename(sys.argv[0]) + " " + os.environ["ICSA_PLUGINS"] + "\\n")
"""


@pytest.mark.slow  # two real jobs of the tiny workflow (~15 s)
def test_jobs_import_the_configs_plugins_not_the_callers(tmp_path, plugin_dir, monkeypatch):
    """The config's `plugins:` reach every job through the job's own shell: a value of
    $ICSA_PLUGINS left in the caller's environment (here a module that does not exist) never
    does, and parsing the Snakefile changes no environment."""
    (plugin_dir / "marker.py").write_text(MARKER)
    marks = tmp_path / "marks.txt"
    monkeypatch.setenv("MARKER_FILE", str(marks))
    monkeypatch.setenv(registry.PLUGINS_ENV, "no_such_plugin")
    workdir = scratch_workdir(tmp_path / "work")
    (workdir / "marker.yaml").write_text("plugins: [marker]\n")
    result = snakemake(workdir, "--cores", "2", "results/datasets/pitts30k.json",
                       config="config/tiny.yaml marker.yaml")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {"prepare_synthetic": 1, "check_dataset": 1}
    # Snakemake itself (validating the config), its environment as it was, and each of the
    # two `icsa` jobs, with the config's list.
    lines = sorted(marks.read_text().splitlines())
    assert lines == ["icsa marker", "icsa marker", "snakemake no_such_plugin"], lines


TAKEN = """from icsa.registry import ATTENTIONS, register_attention

register_attention(ATTENTIONS["icsa"])  # a name the package owns
"""


@pytest.mark.parametrize(
    ("source", "message"),
    [("raise RuntimeError('no GPU driver')\n", "raised RuntimeError at import: no GPU driver"),
     ("def broken(:\n", "raised SyntaxError at import: "),
     ("import no_such_dependency\n", "cannot be imported (No module named 'no_such_dependency')"),
     (TAKEN, "attention 'icsa' is registered already in icsa.registry.ATTENTIONS")],
    ids=["raises", "syntax", "dependency", "taken"],
)  # fmt: skip
def test_a_plugin_failing_at_import_is_named_first(
    request, tmp_path, monkeypatch, capsys, source, message
):
    """Nothing lost, round two: a plugin that raised at import, or registered a taken name, was
    a traceback (or a message) that did not name it."""
    name = f"plugin_{request.node.callspec.id}"  # a module of its own per case
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(registry.PLUGINS_ENV, name)
    names = dict(registry.ATTENTIONS)
    argv = ["prepare", "check", "--root", str(tmp_path / "none"), "--dataset", "pitts30k"]
    assert main(argv) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"icsa prepare: error: plugins: {name!r} ({tmp_path / name}.py)"), first
    assert message in first, first
    assert names == registry.ATTENTIONS
