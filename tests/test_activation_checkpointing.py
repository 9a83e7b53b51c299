"""train.activation_checkpointing: the trained blocks recomputed in the backward pass.

The same numbers (outputs, gradients, BatchNorm's running stats; whole training runs bit for
bit on CPU), less kept for the backward pass, no effect on forwards without grad, and a run that
toggles it resumes.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.utils.checkpoint

from icsa.models import build_model
from tests.helpers.city import QUICK, run_training

TIMINGS = ("train_s", "cache_refresh_s", "val_s")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def checkpoint_calls(monkeypatch) -> list[int]:
    """Counts the calls of torch.utils.checkpoint.checkpoint (one per checkpointed block)."""
    calls: list[int] = []
    original = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    return calls


def _step(model, x: torch.Tensor, checkpointing: bool) -> tuple[torch.Tensor, int]:
    """Descriptors of one forward and backward with grad, and the bytes saved for backward
    outside the checkpointed blocks (their own saving is the checkpoint's business)."""
    model.activation_checkpointing = checkpointing
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    out.square().sum().backward()
    return out.detach(), sum(saved)


@pytest.mark.parametrize(("name", "block"), [("vgg16", 1), ("resnet18", 3)])
def test_same_values_gradients_and_buffers_with_less_saved(name, block, checkpoint_calls):
    """ResNet's BatchNorm updates its running stats in the forward pass; the recomputation
    must not update them a second time."""
    model = build_model(name, "icsa", 4, (64, 64), lowest_trained_block=block).train()
    x = torch.randn(3, 3, 64, 64)
    plain, checkpointed = model, copy.deepcopy(model)
    out_a, saved_a = _step(plain, x, checkpointing=False)
    assert not checkpoint_calls
    out_b, saved_b = _step(checkpointed, x, checkpointing=True)
    assert len(checkpoint_calls) == 6 - block  # one segment per trained block
    assert torch.equal(out_a, out_b)
    assert saved_b < saved_a / 2
    for (key, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values()):
        assert torch.equal(a, b), key  # running_mean/var and num_batches_tracked too
    for (key, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        assert (a.grad is None) == (b.grad is None), key
        assert a.grad is None or torch.equal(a.grad, b.grad), key


def test_forwards_without_grad_do_not_checkpoint(checkpoint_calls):
    model = build_model("vgg16", "icsa", 4, (64, 64), lowest_trained_block=1)
    model.activation_checkpointing = True
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model.eval()(x)
    with torch.inference_mode():
        model(x)
    assert not checkpoint_calls


def _outcome(run_dir) -> tuple[dict, list]:
    state = torch.load(run_dir / "state" / "checkpoint_last.pt", weights_only=True)
    history = json.loads((run_dir / "history.json").read_text())
    untimed = [{k: v for k, v in row.items() if k not in TIMINGS} for row in history]
    return state, untimed


@pytest.mark.parametrize("block", ["1", "3"])
def test_training_is_bit_identical_and_checkpoints_every_step(
    tiny_city, tmp_path, checkpoint_calls, block
):
    plain = tmp_path / "plain"
    run_training(tiny_city, plain, QUICK, lowest_trained_block=block)
    assert not checkpoint_calls
    on = tmp_path / "checkpointed"
    run_training(tiny_city, on, {**QUICK, "activation_checkpointing": True},
                 lowest_trained_block=block)  # fmt: skip
    a, history_a = _outcome(plain)
    b, history_b = _outcome(on)
    assert history_a == history_b and history_a[-1]["loss"] > 0
    # Every training step checkpoints each trained block once; the no-grad forwards (prefix
    # cache, mining refresh, validation) never do.
    steps = sum(row.get("steps", 0) for row in history_b)
    assert steps > 0 and len(checkpoint_calls) == steps * (6 - int(block))
    assert a["model_state"].keys() == b["model_state"].keys()
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    for key, state in a["optimizer_state"]["state"].items():
        other = b["optimizer_state"]["state"][key]["momentum_buffer"]
        assert torch.equal(state["momentum_buffer"], other), key
    assert torch.equal(a["mining_state"]["neg_cache"], b["mining_state"]["neg_cache"])


def test_toggling_it_resumes_the_run(tiny_city, tmp_path):
    run_dir = tmp_path / "run"
    first = run_training(tiny_city, run_dir, QUICK)
    before = _outcome(run_dir)[1]
    again = run_training(tiny_city, run_dir, {**QUICK, "activation_checkpointing": True})
    assert not first["resumed"] and again["resumed"] and again["epochs"] == 1
    assert _outcome(run_dir)[1] == before  # the finished run was not trained again
