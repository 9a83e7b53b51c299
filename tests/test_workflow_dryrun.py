"""`snakemake -n` for every table target lists exactly the jobs that table needs (tiny config).

The Snakemake runner is tests/helpers/workflow.py.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shlex
import subprocess
from collections import Counter

import pytest
import yaml
from PIL import Image

from icsa.utils import available_cpus
from tests.helpers.datasets import make_dataset
from tests.helpers.workflow import (
    BIN,
    ROOT,
    env,
    job_counts,
    planned_runs,
    scratch_workdir,
    snakemake,
)

# ---- the tests --------------------------------------------------------------------------------
TINY = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())


def expected_jobs(table: str, seeds: list[int]) -> tuple[Counter, set[str]]:
    """Jobs a fresh directory needs for one table, derived from the config by hand."""
    spec = TINY["tables"][table]
    if spec.get("kind") == "efficiency":
        return Counter(efficiency=1, table=1), set()
    blocks = ["5" if str(b) == "last" else str(b) for b in spec["blocks"]]
    runs = {
        f"pitts30k-{bb}-{att}-b{block}-s{seed}"
        for bb, block, att, seed in itertools.product(
            spec["backbones"], blocks, spec["attentions"], seeds
        )
    }
    eval_dataset = TINY["evalsets"][spec["evalset"]].split("-")[0]
    checks = len({"pitts30k", eval_dataset})
    # One k-means per backbone for the modules that are the identity at init, one more per
    # backbone for each module that is not (SE, CBAM: sampled through the untrained module).
    identity = {"none", "ia", "icsa", "ch", "sp"}
    sources = {(bb, "backbone" if att in identity else att)
               for bb in spec["backbones"] for att in spec["attentions"]}  # fmt: skip
    n = len(runs)
    counts = Counter(
        prepare_synthetic=1, check_dataset=checks, kmeans=len(sources) * len(seeds),
        train=n, extract=n, evaluate=n, table=1,
    )  # fmt: skip
    return counts, runs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return scratch_workdir(tmp_path_factory.mktemp("dryrun"))


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "table4", "table5", "table6"])
def test_dry_run_lists_exactly_the_jobs_of_each_table(workdir, table):
    result = snakemake(workdir, "-n", "--cores", "2", f"results/{table}.csv")
    assert result.returncode == 0, result.stdout[-3000:]
    counts, runs = expected_jobs(table, [0])
    assert job_counts(result.stdout) == counts
    assert planned_runs(result.stdout) == runs
    assert not (workdir / "results").exists()  # a dry run writes nothing


def test_seeds_multiply_the_runs_and_table5_has_eight_per_seed(workdir):
    (workdir / "seeds.yaml").write_text("seeds: [0, 3]\n")
    result = snakemake(workdir, "-n", "--cores", "2", "results/table5.csv",
                       config="config/tiny.yaml seeds.yaml")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    counts, runs = expected_jobs("table5", [0, 3])
    assert job_counts(result.stdout) == counts and counts["train"] == 16  # tiny: 4 depths
    assert "pitts30k-vgg16-icsa-b1-s3" in planned_runs(result.stdout) == runs


def test_default_config_table5_is_twelve_trainings_per_seed_and_lint_is_clean(workdir):
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    result = snakemake(workdir, "-n", "--cores", "8", "results/table5.csv", config="")
    assert result.returncode == 0, result.stdout[-3000:]
    assert len(default["seeds"]) >= 3  # intervals that cover training randomness (issue 12)
    assert job_counts(result.stdout)["train"] == 12 * len(default["seeds"])
    # --cores 8 on this machine: a training claims a share of the 8 cores that matches its
    # share of the physical CPUs, so that the scheduler never oversubscribes them.
    threads = {int(t) for t in re.findall(r"rule train:.*?threads: (\d+)", result.stdout, re.S)}
    cpus = available_cpus()
    job = min(default["resources"]["train"]["cpus"], cpus)  # capped by the machine
    expected = min(8, math.ceil(job * 8 / cpus)) if cpus < 8 else job
    assert threads == {expected}
    lint = snakemake(workdir, "--lint", config="")
    assert "Lints for" not in lint.stdout, lint.stdout[-3000:]
    assert "your workflow is in a good condition" in lint.stdout


def test_figures_name_the_synthetic_data_they_draw(workdir):
    from icsa.cli import build_parser

    result = snakemake(workdir, "-n", "-p", "--cores", "2", "figures")
    assert result.returncode == 0, result.stdout[-3000:]
    labels = {}
    for cmd in re.findall(r"Shell command: (icsa analysis .*)", result.stdout):
        args = build_parser().parse_args(shlex.split(cmd.split(" > ")[0])[1:])
        labels[args.figure] = getattr(args, "data_label", None)
    assert labels["svd"] == labels["tsne"] == labels["retrieval"] == (
        "synthetic Pitts30k-role city, test"
    )  # fmt: skip
    assert labels["curves"] == "validation: synthetic Pitts30k-role city, val"


def test_every_shell_command_parses_with_the_icsa_cli(workdir):
    """Each rule's `icsa …` invocation (also wrapped in `icsa gpu run` for CUDA) uses only flags
    the CLI accepts: a renamed flag fails here, not hours into a run."""
    from icsa.cli import build_parser

    (workdir / "cuda.yaml").write_text("device: cuda\n")
    result = snakemake(workdir, "-n", "-p", "--cores", "2", "tables",
                       config="config/tiny.yaml cuda.yaml")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    parser = build_parser()
    commands = set()
    for cmd in re.findall(r"Shell command: (.*icsa .*)", result.stdout):
        tokens = shlex.split(cmd[cmd.index("icsa ") :].split(" > ")[0])
        if tokens[1:3] == ["gpu", "run"]:
            split = tokens.index("--")
            parser.parse_args(tokens[1:split])
            tokens = tokens[split + 1 :]
        parser.parse_args(tokens[1:])  # SystemExit on an unknown or missing flag
        commands.add(" ".join(tokens[1:3]) if tokens[1] in ("prepare", "tables") else tokens[1])
    assert commands == {"prepare synthetic", "prepare check", "kmeans", "train", "extract",
                        "evaluate", "efficiency", "tables build"}  # fmt: skip
    assert "--device cuda" in result.stdout and "icsa gpu run --lock-dir" in result.stdout


def test_an_image_overwritten_in_place_reruns_the_dataset_check(tmp_path):
    # Issue 16: user data changed in place (same name, new content) used to reuse stale results.
    workdir = scratch_workdir(tmp_path)
    make_dataset(workdir / "user" / "pitts", "pitts30k",
                 {"train": (6, 4), "val": (5, 3), "test": (7, 2)})  # fmt: skip
    make_dataset(workdir / "user" / "tokyo", "tokyotm", {"train": (6, 4), "val": (5, 3)})
    (workdir / "user.yaml").write_text(
        "synthetic: null\ndatasets: {pitts30k: {root: user/pitts}, tokyotm: {root: user/tokyo}}\n"
    )
    config, target = "config/tiny.yaml user.yaml", "results/datasets/pitts30k.json"
    result = snakemake(workdir, "--cores", "1", target, config=config)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Nothing to be done" in snakemake(workdir, "-n", target, config=config).stdout
    image = next((workdir / "user" / "pitts" / "test").rglob("*_db.jpg"))
    Image.new("RGB", (16, 12), (250, 0, 0)).save(image)  # same name and size, new content
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    rerun = snakemake(workdir, "-n", target, config=config)
    assert job_counts(rerun.stdout) == {"check_dataset": 1}, rerun.stdout[-3000:]


@pytest.mark.parametrize("config", [[], ["--configfile", "../config/tiny.yaml"]],
                         ids=["default", "configfile"])  # fmt: skip
def test_running_from_the_workflow_folder_says_where_to_run(config):
    """Nothing lost, round two: `cd workflow && snakemake -n` failed on a missing config file
    (config/paper_values.yaml with --configfile) without a hint where to run."""
    exe = BIN / "snakemake"
    result = subprocess.run(
        [str(exe if exe.exists() else "snakemake"), "-n", *config], cwd=ROOT / "workflow",
        env=env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    missing = "config/config.yaml or config/paper_values.yaml"
    message = f"{ROOT / 'workflow'}: no {missing} here; run snakemake from the repository root"
    assert result.stdout.count(message) == 1, result.stdout[-3000:]
    assert "make rehearse" in result.stdout and "Job stats" not in result.stdout
    assert not (ROOT / "workflow" / ".snakemake").exists()


def test_a_table_asked_for_in_a_folder_without_config_says_where_to_run(tmp_path):
    # Elsewhere, with --configfile, the jobs that need no config/ plan (tests/test_slurm.py,
    # test_gpu_alloc.py); a table needs config/paper_values.yaml, which the error names.
    exe = BIN / "snakemake"
    result = subprocess.run(
        [str(exe if exe.exists() else "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"),
         "--configfile", str(ROOT / "config" / "tiny.yaml"), "-n", "results/table1.csv"],
        cwd=tmp_path, env=env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and "Job stats" not in result.stdout
    message = f"{tmp_path}: no config/paper_values.yaml here; run snakemake from the repository"
    assert message in result.stdout, result.stdout[-3000:]
