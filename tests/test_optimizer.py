"""The optimiser choice: SGD (the NetVLAD recipe) or Adam (pytorch-NetVlad --optim ADAM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icsa.errors import InputError
from icsa.train.settings import TrainSettings
from icsa.train.state import RunState


def _one_step(settings: TrainSettings) -> tuple[torch.Tensor, torch.Tensor, RunState]:
    """One step on a linear model with a fixed gradient; returns (before, after, state)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    model.config = {}  # what to_checkpoint records of an icsa model
    state = RunState.start(model, settings, np.zeros((1, 1), np.int64))
    before = model.weight.detach().clone()
    grad = torch.linspace(-2.0, 3.0, 18).reshape(3, 6)
    model.weight.grad, model.bias.grad = grad.clone(), torch.ones(3)
    state.optimizer.step()
    return before, model.weight.detach().clone(), state


def adam_settings() -> TrainSettings:
    return TrainSettings(optimizer="adam", lr=0.01, weight_decay=0.0)


def test_sgd_is_the_default_and_steps_by_lr_times_gradient():
    before, after, state = _one_step(TrainSettings(lr=0.1, weight_decay=0.0))
    assert isinstance(state.optimizer, torch.optim.SGD)
    grad = torch.linspace(-2.0, 3.0, 18).reshape(3, 6)
    torch.testing.assert_close(before - after, 0.1 * grad)


def test_adam_first_step_moves_each_weight_by_lr_against_its_gradient_sign():
    # Adam's first bias-corrected step is lr * g / (|g| + eps): the same size for every weight.
    before, after, state = _one_step(adam_settings())
    assert isinstance(state.optimizer, torch.optim.Adam)
    grad = torch.linspace(-2.0, 3.0, 18).reshape(3, 6)
    torch.testing.assert_close(before - after, 0.01 * torch.sign(grad), atol=1e-6, rtol=1e-4)
    # a resumed run gets Adam's moments back from the checkpoint
    checkpoint = state.to_checkpoint({})
    model = torch.nn.Linear(6, 3)
    fresh = RunState.start(model, adam_settings(), np.zeros((1, 1), np.int64))
    assert not fresh.optimizer.state_dict()["state"]
    fresh.restore(checkpoint)
    torch.testing.assert_close(
        fresh.optimizer.state_dict()["state"][0]["exp_avg_sq"],
        state.optimizer.state_dict()["state"][0]["exp_avg_sq"],
    )


def test_an_unknown_optimizer_is_an_input_error_naming_the_choices():
    with pytest.raises(InputError, match=r"optimizer='rmsprop'.*'sgd', 'adam'"):
        TrainSettings(optimizer="rmsprop")


def test_the_default_optimizer_leaves_recorded_recipes_unchanged():
    # Runs recorded before the key existed keep their spec, params and fingerprint.
    assert "optimizer" not in TrainSettings().to_dict()
    assert TrainSettings(optimizer="adam").to_dict()["optimizer"] == "adam"
    for settings in (TrainSettings(), TrainSettings(optimizer="adam", lr=0.01)):
        assert TrainSettings.from_dict(settings.to_dict()) == settings
