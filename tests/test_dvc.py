"""DVC end to end, for real: repro → push → fresh clone → pull → the table target reuses the
pulled checkpoints (no training job), in a temporary git repository with a local remote.

The repository is a copy of this one (workflow, configs, dvc.yaml, .dvc/config, the package
sources the stages depend on) whose config/config.yaml is the tiny config limited to Table 6
(two trainings), so that the whole round trip takes a minute or two on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.workflow import BIN, ROOT, env, job_counts

pytestmark = pytest.mark.slow

COPIED = ["workflow", "config", "profiles", "icsa", "dvc.yaml", ".dvcignore", ".gitignore"]


def run(cmd: list[str], cwd: Path, timeout: float = 1200) -> str:
    environ = env()
    environ.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                   GIT_COMMITTER_EMAIL="t@t", DVC_NO_ANALYTICS="1")  # fmt: skip
    tool = BIN / cmd[0]
    result = subprocess.run(
        [str(tool) if tool.exists() else cmd[0], *cmd[1:]], cwd=cwd, env=environ, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}"
    return result.stdout


def make_repo(base: Path) -> Path:
    repo = base / "repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=ignore)
        else:
            shutil.copy2(src, repo / name)
    (repo / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(ROOT / ".dvc" / name, repo / ".dvc" / name)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")  # plot templates
    config = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())
    config["tables"] = {"table6": config["tables"]["table6"]}
    (repo / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "tiny icsa"], repo)
    return repo


def _numbers(tree, path=()):
    """(key path, value) of every number in a JSON tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _numbers(value, (*path, key))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


def check_what_dvc_users_see(repo: Path) -> None:
    """`dvc metrics show`: Recall@N, ΔR@1 (its MDE with several seeds) and each seed's R@1 and
    ΔR@1 per row only; `dvc plots show`: the table's Recall@N
    and training curves with their data; `dvc params diff`: a changed list shown once."""
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo))
    numbers = list(_numbers(shown))
    table = json.loads((repo / "results" / "table6.json").read_text())
    assert {path[-1] for path, _ in numbers} == {k for row in table.values() for k in row}
    metric = r"R@(1|5|10|20)|dR@1(_mde)?|(R@1|dR@1)_s[0-9]+"
    assert all(re.fullmatch(metric, path[-1]) for path, _ in numbers), numbers
    assert {"VGG16 block5", "VGG16+ICSA block5"} <= {path[-2] for path, _ in numbers}

    # (This repository has Table 6 only: DVC warns, on stderr, about the other tables' plots.)
    shown = run(["dvc", "plots", "show", "--json"], repo)
    plots = json.loads(shown[shown.index("{") :])["data"]
    recall = plots["Recall@N per row (Table 6)"][0]["content"]
    points = recall["data"]["values"]
    assert {p["row"] for p in points} == {"VGG16 block5", "VGG16+ICSA block5"}
    assert sorted({int(p["N"]) for p in points}) == [1, 5, 10, 20]
    assert recall["encoding"]["color"]["field"] == "row"  # .dvc/plots/by_row.json
    curves = plots["Training curves (Table 6 runs)"][0]["content"]["data"]["values"]
    assert {p["run"] for p in curves} == {"pitts30k-vgg16-none-b5-s0", "pitts30k-vgg16-icsa-b5-s0"}

    config_path = repo / "config" / "config.yaml"
    original = config_path.read_text()
    config = yaml.safe_load(original)
    config["tables"]["table6"]["attentions"] = ["icsa", "none"]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    diff = json.loads(run(["dvc", "params", "diff", "--json"], repo))["config/config.yaml"]
    # Listed once, each list as it is (not concatenated over the stages tracking it); DVC's JSON
    # gives a list value as its Python repr.
    old, new = str(["none", "icsa"]), str(["icsa", "none"])
    assert diff == {"tables.table6.attentions": {"old": old, "new": new}}, diff
    config_path.write_text(original)


def test_pull_in_fresh_clone_reuses_checkpoints(tmp_path):
    repo = make_repo(tmp_path)
    # The default remote of .dvc/config is ../icsa-dvc-remote, beside the clone.
    # (DVC wraps long lines at the terminal width, inside the path)
    assert "icsa-dvc-remote" in "".join(run(["dvc", "remote", "list"], repo).split())
    run(["dvc", "repro"], repo)
    assert "up to date" in run(["dvc", "repro"], repo)  # an immediate rerun runs nothing
    check_what_dvc_users_see(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "results"], repo)
    run(["dvc", "push"], repo)
    assert (tmp_path / "icsa-dvc-remote").is_dir()

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    checkpoints = sorted(clone.glob("results/runs/*/checkpoint_best.pt"))
    assert [p.parent.name for p in checkpoints] == [
        "pitts30k-vgg16-icsa-b5-s0", "pitts30k-vgg16-none-b5-s0"
    ]  # fmt: skip
    digest = {p: p.read_bytes() for p in checkpoints}

    # Give Snakemake the provenance DVC vouches for (dvc.yaml explains why), then ask it.
    run(["dvc", "status", "-q", "--with-deps", "models"], clone)
    run(["snakemake", "--touch", "--forceall", "--cores", "1", "models"], clone)
    for path in ["results/table6.csv", "results/table6.md", "results/table6.json"]:
        (clone / path).unlink()
    shutil.rmtree(clone / "results" / "metrics")
    plan = job_counts(run(["snakemake", "-n", "--cores", "2", "results/table6.csv"], clone))
    assert plan == {"extract": 2, "evaluate": 2, "table": 1}, plan

    # The DVC way rebuilds the table the same way: no training, same checkpoints.
    log = run(["dvc", "repro"], clone)
    assert "rule train" not in log and "rule kmeans" not in log and "rule table" in log
    assert all(p.read_bytes() == data for p, data in digest.items())
    assert (clone / "results" / "table6.csv").read_text() == (
        repo / "results" / "table6.csv"
    ).read_text()

    # Provenance now exists for the pulled checkpoints: a new learning rate retrains them.
    config = yaml.safe_load((clone / "config" / "config.yaml").read_text())
    config["train"]["lr"] = 2.0e-4
    (clone / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plan = job_counts(run(["snakemake", "-n", "--cores", "2", "models"], clone))
    assert plan["train"] == 2 and "kmeans" not in plan and "check_dataset" not in plan, plan
    assert os.path.isdir(clone / ".dvc" / "cache")


def test_a_damaged_object_in_the_remote_is_refused_on_pull(tmp_path):
    """The project's .dvc/config verifies what it pulls: a checkpoint whose bytes changed in the
    remote is not checked out (without `verify`, DVC checks it out and `dvc status` says "up to
    date")."""
    repo = tmp_path / "repo"
    run(["git", "init", "-q", str(repo)], tmp_path)
    (repo / ".dvc").mkdir()
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    (repo / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    run_dir = repo / "results" / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint_best.pt").write_bytes(os.urandom(50_000))
    (run_dir / "history.json").write_text("[]\n")
    run(["dvc", "add", "-q", "results/runs"], repo)  # a directory out, as in dvc.yaml
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "runs"], repo)
    run(["dvc", "push", "-q"], repo)
    objects = [p for p in (tmp_path / "icsa-dvc-remote").rglob("*") if p.is_file()]
    damaged = max(objects, key=lambda p: p.stat().st_size)  # the checkpoint
    assert damaged.stat().st_size == 50_000
    damaged.chmod(0o644)
    data = bytearray(damaged.read_bytes())
    data[25_000] ^= 0xFF
    damaged.write_bytes(bytes(data))

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    environ = {**env(), "DVC_NO_ANALYTICS": "1"}
    pulled = subprocess.run([str(BIN / "dvc"), "pull"], cwd=clone, env=environ, text=True,
                            capture_output=True, timeout=600)  # fmt: skip
    assert pulled.returncode != 0, pulled.stdout + pulled.stderr
    assert not (clone / "results" / "runs" / "r" / "checkpoint_best.pt").exists()
