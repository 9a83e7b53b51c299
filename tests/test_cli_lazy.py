"""`icsa --help`, every `icsa <cmd> --help` and `icsa --version` load no heavy library.

On a loaded 2-core machine importing torch took 40–55 s, so the parser must not need it. Each
check runs in a fresh interpreter (a module imported by an earlier test would hide an eager
import) and asserts that torch, torchvision, faiss and matplotlib are absent from sys.modules
after argparse has printed the help and exited.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "faiss", "matplotlib")

# Runs the real entry point (icsa.cli.main) on argv, then reports which heavy modules loaded.
PROBE = """
import json, sys
from icsa.cli import main
code = None
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
print("\\n@@" + json.dumps({"code": code, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))


def _probe(*argv: str) -> tuple[dict, str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    text, _, result = out.stdout.rpartition("\n@@")
    return json.loads(result), text


def _commands() -> list[list[str]]:
    """Every subcommand and sub-subcommand path the parser knows, read from the parser itself."""
    import argparse

    from icsa.cli import build_parser

    paths: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return paths


COMMANDS = _commands()


def test_the_walk_finds_every_step() -> None:
    top = {c[0] for c in COMMANDS}
    assert {"prepare", "kmeans", "train", "extract", "evaluate", "tables", "analysis"} <= top
    assert ["analysis", "curves"] in COMMANDS and ["prepare", "synthetic"] in COMMANDS


@pytest.mark.parametrize("argv", [[]] + COMMANDS, ids=lambda a: " ".join(a) or "icsa")
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    result, text = _probe(*argv, "--help")
    assert result["code"] == 0
    assert "usage: icsa" in text
    assert result["heavy"] == [], f"icsa {' '.join(argv)} --help imported {result['heavy']}"


def test_version() -> None:
    import icsa

    result, text = _probe("--version")
    assert result["code"] == 0 and result["heavy"] == []
    assert text.strip() == f"icsa {icsa.__version__}"
    assert icsa.__version__ == _pyproject_version()


def _pyproject_version() -> str:
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the package itself needs 3.10

    data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    return data["project"]["version"]


def test_the_probe_sees_an_eager_import() -> None:
    """The check is not vacuous: a command that does load torch is reported."""
    out = subprocess.run(
        [sys.executable, "-c", "import icsa; icsa.build_model; import sys; "
         "print('torch' in sys.modules)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.stdout.strip() == "True", out.stderr


def test_package_import_is_light_and_exports_resolve() -> None:
    code = (
        "import sys, icsa, icsa.data; light = not {'torch', 'faiss'} & set(sys.modules); "
        "from icsa import ICSA, NetVLAD, build_model; from icsa.data import ImageDataset; "
        "print(light, ICSA.__module__, ImageDataset.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "icsa.models.independent", "icsa.data.datasets"], (
        out.stderr
    )


def test_extract_dtype_choices_match_the_library() -> None:
    from icsa.cli import extract as cli_extract
    from icsa.evaluate import extract as lib_extract

    assert tuple(cli_extract.DTYPES) == tuple(lib_extract.DTYPES)
    from icsa import fast_inference

    assert tuple(cli_extract.FAST_MODES) == fast_inference.MODES
    from icsa.train import settings

    assert settings.FAST_MODES == fast_inference.MODES


def test_a_cpu_evaluation_loads_neither_torch_nor_torchvision(tmp_path) -> None:
    """`icsa evaluate --device cpu` (the workflow's evaluate job) is faiss and numpy only: torch
    and torchvision (about 3 s of imports per job, torch._dynamo among them) stay unloaded, and
    the evaluation still ranks: the result is the brute-force nearest neighbour's."""
    import numpy as np

    from icsa.data.dbstruct import DbStruct, write_dbstruct

    rng = np.random.default_rng(0)
    db_utm = np.stack([np.arange(8) * 100.0, np.zeros(8)], axis=1)
    q_utm = db_utm[:4] + [5.0, 0.0]
    write_dbstruct(tmp_path / "datasets" / "pitts30k_test.mat", DbStruct(
        "test", [f"db{i}.jpg" for i in range(8)], db_utm, [f"q{i}.jpg" for i in range(4)],
        q_utm, 8, 4, 25.0, 625.0, 100.0,
    ))  # fmt: skip
    db = rng.standard_normal((8, 16)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = db[[0, 1, 5, 3]] + 0.01  # query 2 is nearest to db 5, 500 m from its place
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    np.save(tmp_path / "db.npy", db)
    np.save(tmp_path / "q.npy", q.astype(np.float32))
    result, text = _probe(
        "evaluate", "--root", str(tmp_path), "--dataset", "pitts30k", "--split", "test",
        "--db", str(tmp_path / "db.npy"), "--q", str(tmp_path / "q.npy"), "--model-id", "m",
        "--ns", "1", "--out-metrics", str(tmp_path / "m.json"), "--device", "cpu",
    )  # fmt: skip
    assert result["code"] == 0, text
    assert "torch" not in result["heavy"] and "torchvision" not in result["heavy"]
    assert "faiss" in result["heavy"]  # the probe sees what the evaluation did load
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["recalls"] == {"1": 0.75}
