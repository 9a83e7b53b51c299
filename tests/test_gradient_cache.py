"""train.step_chunk, the gradient cache (icsa/train/gradient_cache.py):

- one step's loss and every trained parameter's gradient equal the plain step's to rounding,
  for cached prefixes and recomputed ones, for chunks that do and do not divide the inputs;
- a chunked run is deterministic: killed and resumed, it ends bit-identical to a straight one,
  and it stays within rounding of the plain run;
- BatchNorm in the trained blocks is refused, naming the run and the modules;
- ``icsa plan`` sizes a chunked step: the activations of ``step_chunk`` inputs, one more forward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icsa import plan
from icsa.errors import InputError
from icsa.models import build_model
from icsa.pipeline import run_spec as run_spec_of
from icsa.spec import ModelSpec
from icsa.train.gradient_cache import gradient_cache, require_chunkable
from icsa.train.loop import TripletTrainer
from icsa.train.mining import MinedTriplet
from tests.helpers.city import MODEL, QUICK, killed_in_epoch_2, make_trainer, run_training
from tests.test_multisimilarity import MS
from tests.test_plan import RUN, tiny_config

torch.set_num_threads(1)

# 2 queries, 2 positives, 3 + 5 negatives: 12 inputs a step.
TRIPLETS = [
    MinedTriplet(0, 1, np.array([5, 6, 7])),
    MinedTriplet(3, 4, np.array([9, 10, 11, 12, 2])),
]


def _trainer(city, run_dir, model: dict, **settings) -> TripletTrainer:
    return make_trainer(city, run_dir, model, **{**QUICK, **settings})


def _step(trainer: TripletTrainer) -> tuple[float, dict[str, torch.Tensor]]:
    """One step's loss and the gradients it leaves on the trained parameters."""
    model = trainer.state.model
    model.train()
    trainer.state.optimizer.zero_grad(set_to_none=True)
    loss, used, backward = trainer._loss(TRIPLETS)
    assert used == 8
    loss.backward()
    if backward is not None:
        backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def _assert_same_gradients(found: dict, expected: dict, chunk: int) -> None:
    """Equal to rounding. Rounding differs with the batch a convolution sees, and a ReLU whose
    input is within rounding of 0 passes a gradient in one pass and not in the other: measured
    up to 3e-4 of a parameter's gradient norm (GeM, chunks of 1). A chunk's gradient lost or
    sent to other inputs is 1e-1 of it or more."""
    total = torch.cat([g.flatten() for g in expected.values()]).norm()
    for name, grad in expected.items():
        error = float((found[name] - grad).norm())
        assert error <= 1e-3 * total, (name, chunk)
        if grad.norm() > 1e-3 * total:  # not one of the inert, near-zero gradients
            assert error <= 1e-2 * grad.norm(), (name, chunk)


@pytest.mark.parametrize(
    ("model", "cached"),
    [
        ({}, True),
        ({"lowest_trained_block": "4", "attention": "cbam"}, False),
        ({"aggregation": "gem"}, True),
    ],  # fmt: skip
    ids=["b5-icsa-cached", "b4-cbam-recomputed", "b5-gem"],
)
def test_a_chunked_step_has_the_plain_steps_loss_and_gradients(tiny_city, tmp_path, model,
                                                               cached):  # fmt: skip
    plain = _trainer(tiny_city, tmp_path / "plain", model, prefix_cache=cached)
    assert plain.sources.train_db.cached is cached
    loss, grads = _step(plain)
    assert grads and all(g.abs().sum() > 0 for g in grads.values())
    for chunk in (1, 5, 11):  # 12 inputs: chunks of 1, of 5/5/2, of 11/1
        chunked = _trainer(tiny_city, tmp_path / f"c{chunk}", model, prefix_cache=cached,
                           step_chunk=chunk)  # fmt: skip
        c_loss, c_grads = _step(chunked)
        assert c_loss == pytest.approx(loss, rel=1e-5)
        assert c_grads.keys() == grads.keys()  # frozen blocks get none, trained ones all
        _assert_same_gradients(c_grads, grads, chunk)


def test_the_second_pass_needs_the_loss_gradient_first():
    layer = torch.nn.Linear(3, 2)
    desc, backward = gradient_cache(torch.randn(5, 3), layer, 2)
    assert desc.requires_grad and desc.grad_fn is None  # a leaf: no graph kept
    with pytest.raises(RuntimeError, match="back-propagate the loss"):
        backward()


def test_a_chunked_run_resumes_bit_identically_and_stays_near_the_plain_run(
    tiny_city, tmp_path, monkeypatch
):
    settings = {**QUICK, "epochs": 2, "step_chunk": 5}
    straight = tmp_path / "straight"
    run_training(tiny_city, straight, settings)
    resumed = tmp_path / "resumed"
    with killed_in_epoch_2(), pytest.raises(KeyboardInterrupt):
        run_training(tiny_city, resumed, settings)
    assert run_training(tiny_city, resumed, settings)["resumed"]
    a = torch.load(straight / "state" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(resumed / "state" / "checkpoint_last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key

    run_training(tiny_city, tmp_path / "plain", {**settings, "step_chunk": 0})
    p = torch.load(tmp_path / "plain" / "state" / "checkpoint_last.pt", weights_only=True)
    for key, value in p["model_state"].items():
        torch.testing.assert_close(a["model_state"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    losses = [[r["loss"] for r in c["history"][1:]] for c in (a, p)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    # Part of the recipe: a chunked run is another run; a plain run's identity is unchanged.
    assert a["train_settings"]["step_chunk"] == 5 and "step_chunk" not in p["train_settings"]


def test_batchnorm_in_the_trained_blocks_is_refused():
    resnet = build_model(
        **ModelSpec(**{**MODEL, "backbone": "resnet18", "image_size": (64, 64)}).build_args()
    )
    with pytest.raises(InputError, match=r"run-x: train.step_chunk=4.*BatchNorm \(backbone"):
        require_chunkable(resnet, 4, "run-x")
    require_chunkable(resnet, 0, "run-x")  # the plain step: nothing to refuse
    vgg = build_model(**ModelSpec(**MODEL).build_args())
    vgg.eval()
    require_chunkable(vgg, 4, "run-x")
    assert not vgg.training  # the check leaves the model's mode as it found it


def test_plan_sizes_a_chunked_step(tiny_city):
    root, _ = tiny_city
    rates = plan.Rates(100.0)
    plain = plan.plan_training(tiny_config(root, prefix_cache=False), RUN, rates)
    chunked = plan.plan_training(tiny_config(root, prefix_cache=False, step_chunk=2), RUN, rates)
    whole = plan.plan_training(tiny_config(root, prefix_cache=False, step_chunk=10**6), RUN,
                               rates)  # fmt: skip
    assert chunked["peak_ram_gb"] < plain["peak_ram_gb"] == whole["peak_ram_gb"]
    assert chunked["epoch_h"] > plain["epoch_h"] == whole["epoch_h"]


def test_a_chunked_multisimilarity_step_has_the_plain_steps_gradients(
    tiny_city, tmp_path, monkeypatch
):
    """The regime's first step (16 images, 4 places × 4), plain and in chunks of 6."""
    first: list[list[torch.Tensor]] = []
    original = torch.amp.GradScaler.step

    def recording(self, optimizer, *args, **kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        first.append([p.grad.clone() for p in params if p.grad is not None])
        return original(self, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", recording)
    settings = {**MS, "epochs": 1}
    run_training(tiny_city, tmp_path / "plain", settings)
    plain = first[0]
    first.clear()
    run_training(tiny_city, tmp_path / "chunked", {**settings, "step_chunk": 6})
    assert len(first) == 2 and len(first[0]) == len(plain)  # the epoch's two steps
    _assert_same_gradients(dict(enumerate(first[0])), dict(enumerate(plain)), 6)


def test_plan_sizes_the_multisimilarity_regime(tiny_city):
    """No mining cache; (db + queries) / (P·K) steps of P·K inputs, whose activations
    step_chunk bounds as for triplets."""
    root, _ = tiny_city
    rates = plan.Rates(100.0)
    ms = {**MS, "prefix_cache": False}
    planned = plan.plan_training(tiny_config(root, **ms), RUN, rates)
    more = plan.plan_training(tiny_config(root, **{**ms, "ms_places_per_batch": 8}), RUN, rates)
    chunked = plan.plan_training(tiny_config(root, **{**ms, "step_chunk": 2}), RUN, rates)
    triplet = plan.plan_training(tiny_config(root, prefix_cache=False), RUN, rates)
    assert more["peak_ram_gb"] > planned["peak_ram_gb"] > chunked["peak_ram_gb"]
    assert chunked["epoch_h"] > planned["epoch_h"]
    assert planned["epoch_h"] != triplet["epoch_h"]
    # The epoch exactly: 16 inputs a step through the whole model, no refresh, then validation.
    config = tiny_config(root, **ms)
    costs = plan.model_costs(run_spec_of(config, RUN).model)
    (t_db, t_q, _), (v_db, v_q, _) = (plan.split_counts(config, "pitts30k", split)
                                      for split in ("train", "val"))  # fmt: skip
    full = costs.prefix_gflop + costs.trained_gflop
    step = 16 * (3 * costs.trained_gflop + costs.prefix_gflop)
    epoch_gflop = -(-(t_db + t_q) // 16) * step + (v_db + v_q) * full
    assert planned["epoch_h"] * 3600 == pytest.approx(epoch_gflop / 100.0, rel=1e-9)


def test_the_workflow_takes_batchnorm_runs_whole_and_says_so_in_their_spec():
    """config train.step_chunk chunks the runs it can; a run whose trained blocks hold
    BatchNorm gets step_chunk 0 in its spec (so its fingerprint and checkpoint say so)."""
    config = {"dataset": "pitts30k", "model": {k: MODEL[k] for k in ("num_clusters",
              "image_size", "weights")}, "train": {**QUICK, "step_chunk": 12}}  # fmt: skip
    chunks = {run: run_spec_of(config, run).recipe.step_chunk for run in (
        "pitts30k-vgg16-icsa-b1-s0", "pitts30k-resnet18-icsa-b5-s0",
        "pitts30k-resnet18-icsa-bnone-s0", "pitts30k-alexnet-none-b3-s0")}  # fmt: skip
    assert chunks == {
        "pitts30k-vgg16-icsa-b1-s0": 12,
        "pitts30k-resnet18-icsa-b5-s0": 0,
        "pitts30k-resnet18-icsa-bnone-s0": 12,
        "pitts30k-alexnet-none-b3-s0": 12,
    }


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "resnet50", "alexnet"])
def test_the_registry_says_which_backbones_hold_batchnorm(name):
    from icsa.registry import BACKBONES

    model = build_model(**ModelSpec(**{**MODEL, "backbone": name, "image_size": (64, 64),
                                       "lowest_trained_block": "1"}).build_args())  # fmt: skip
    found = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert BACKBONES[name].batch_norm == found
