"""Checkpoint I/O: weights_only loading, RNG round trip, atomic writes, model rebuild checks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from icsa.errors import InputError
from icsa.models import build_model
from icsa.train.checkpoint import (
    check_config,
    get_rng_state,
    load_checkpoint,
    load_model,
    save_checkpoint,
    set_rng_state,
)

torch.set_num_threads(1)
SIZE = (32, 32)


def _model(attention: str = "icsa", k: int = 4):
    return build_model("vgg16", attention, k, SIZE, "5", "none", init_seed=0)


def _checkpoint(model) -> dict:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, *SIZE)).sum().backward()
    opt.step()  # creates momentum buffers
    return {
        "model_state": model.state_dict(),
        "model_config": model.config,
        "epoch": 3,
        "optimizer_state": opt.state_dict(),
        "rng_state": get_rng_state(),
        "history": [{"epoch": 1, "loss": 0.5, "recall@5": None}],
        "best_recall": 0.25,
    }


def test_round_trip_loads_weights_only(tmp_path):
    model = _model()
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _checkpoint(model))
    raw = torch.load(path, map_location="cpu", weights_only=True)  # data, not code
    assert raw["epoch"] == 3 and raw["history"][0]["loss"] == 0.5
    assert raw["optimizer_state"]["state"]  # momentum buffers survive
    rebuilt = load_model(
        path,
        expected={
            "backbone": "vgg16",
            "attention": "icsa",
            "num_clusters": 4,
            "lowest_trained_block": "5",
        },
    )
    x = torch.randn(2, 3, *SIZE)
    model.eval()
    assert torch.equal(rebuilt(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary left behind


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"model_state": {}, "model_config": {}, "rng_state": get_rng_state()})
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(path)["rng_state"])
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_failed_save_leaves_previous_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model_state": {}, "model_config": {"a": 1}})
    with pytest.raises(Exception):  # noqa: B017 - torch.save cannot pickle a lambda
        save_checkpoint(path, {"model_state": {}, "model_config": {"a": lambda: 0}})
    assert load_checkpoint(path)["model_config"] == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_mismatching_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _checkpoint(_model("icsa", k=4)))
    with pytest.raises(InputError, match=r"attention: expected 'se', found 'icsa'"):
        load_model(path, expected={"attention": "se"})
    with pytest.raises(InputError, match=r"num_clusters: expected 8, found 4") as err:
        load_model(path, expected={"num_clusters": 8, "backbone": "resnet18"})
    assert "backbone: expected 'resnet18', found 'vgg16'" in str(err.value)
    # block given as int and image size as tuple still match the stored "5" / [32, 32]
    check_config(
        load_checkpoint(path)["model_config"], {"lowest_trained_block": 5, "image_size": SIZE}, "x"
    )


def test_missing_or_garbage_checkpoint(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        load_checkpoint(bad)
    torch.save({"model_state": {}}, tmp_path / "partial.pt")
    with pytest.raises(InputError, match="missing keys \\['model_config'\\]"):
        load_checkpoint(tmp_path / "partial.pt")
