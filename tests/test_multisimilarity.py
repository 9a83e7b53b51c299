"""train.regime multisimilarity: place-grouped batches, pytorch-metric-learning's loss, the
warm-up schedule, a tiny run, bit-identical resume, settings, fingerprints and config checks."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity
from snakemake.utils import validate

from icsa import pipeline
from icsa.errors import InputError
from icsa.spec import fingerprint_differences
from icsa.train.checkpoint import run_identity
from icsa.train.multisimilarity import MultiSimilarityTrainer, augment, ms_loss_and_miner
from icsa.train.places import place_batches, places_from_utm
from icsa.train.schedule import WarmupLinear
from icsa.train.settings import TrainSettings
from icsa.train.state import RunState
from tests.helpers.city import QUICK, run_spec, run_training
from tests.helpers.workflow import ROOT

torch.set_num_threads(1)
# 20 m cells of the tiny city: 8 places of >= 4 images; 2 batches of 4 places an epoch.
MS = {"epochs": 2, "regime": "multisimilarity", "ms_places_per_batch": 4,
      "ms_images_per_place": 4, "ms_place_cell_m": 20.0, "ms_warmup_steps": 2,
      "eval_batch_size": 32}  # fmt: skip
TIMINGS = ("train_s", "cache_refresh_s", "val_s")


def _places():
    # 5 cells of 10 m along x; cell 4 has only 2 images and is dropped for K = 3.
    db = np.array([[x, 0.0] for x in (1, 2, 3, 11, 12, 13, 21, 22, 31, 32, 33, 41)])
    q = np.array([[x, 5.0] for x in (4, 14, 23, 34, 42)])
    return places_from_utm(db, q, 10.0, 3)


def test_places_are_utm_cells_with_enough_images():
    places = _places()
    assert places.num_db == 12 and places.dropped == 1 and len(places) == 4
    assert [p.tolist() for p in places.images] == [
        [0, 1, 2, 12], [3, 4, 5, 13], [6, 7, 14], [8, 9, 10, 15]
    ]  # fmt: skip


def test_batches_hold_k_images_of_p_distinct_places_and_follow_the_seed():
    places = _places()
    batches = place_batches(places, 2, 3, np.random.default_rng([7, 1]))
    assert len(batches) == 2
    seen = []
    for images, ids in batches:
        assert images.shape == (2, 3) and len(set(ids.tolist())) == 2
        for row, place in zip(images, ids):
            assert len(set(row.tolist())) == 3  # without replacement
            assert set(row.tolist()) <= set(places.images[place].tolist())
        seen += ids.tolist()
    assert sorted(seen) == [0, 1, 2, 3]  # every place once per epoch
    again = place_batches(places, 2, 3, np.random.default_rng([7, 1]))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))
    other = [place_batches(places, 2, 3, np.random.default_rng([7, e])) for e in range(2, 6)]
    assert any(not np.array_equal(o[0][0], batches[0][0]) for o in other)
    # A last group of a single place has no negative pair: dropped.
    assert [len(ids) for _, ids in place_batches(places, 3, 3, np.random.default_rng(0))] == [3]


def test_the_loss_is_pytorch_metric_learnings_multisimilarity():
    loss_fn, miner = ms_loss_and_miner(TrainSettings(regime="multisimilarity"))
    assert isinstance(loss_fn, losses.MultiSimilarityLoss)
    assert isinstance(miner, miners.MultiSimilarityMiner)
    emb = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.1, 0], [0.9, 0.3, 0.1], [0, 1, 0.2], [0.2, 0.9, 0], [0.7, 0.7, 0]]),
        dim=1,
    )
    labels = torch.tensor([0, 1, 0, 1, 2])  # hard: images 0 and 1 are alike, of two places
    ref_loss = losses.MultiSimilarityLoss(alpha=1.0, beta=50, base=0.0,
                                          distance=DotProductSimilarity())  # fmt: skip
    ref_miner = miners.MultiSimilarityMiner(epsilon=0.1, distance=CosineSimilarity())
    expected = ref_loss(emb, labels, ref_miner(emb, labels))
    got = loss_fn(emb, labels, miner(emb, labels))
    assert float(expected) > 0 and torch.equal(got, expected)
    # Multi-Similarity (Wang et al. 2019) by hand, no mining (pairs: all): anchor means.
    sim, a, b = emb @ emb.T, 1.0, 50.0
    terms = []
    for i in range(5):
        pos = [sim[i, j] for j in range(5) if j != i and labels[j] == labels[i]]
        neg = [sim[i, j] for j in range(5) if labels[j] != labels[i]]
        t = torch.log1p(sum(torch.exp(-a * s) for s in pos)) / a if pos else 0
        terms.append(t + torch.log1p(sum(torch.exp(b * s) for s in neg)) / b)
    assert torch.allclose(loss_fn(emb, labels), torch.stack([torch.as_tensor(t) for t in terms])
                          .mean(), atol=1e-6)  # fmt: skip


def test_warmup_then_linear_decay():
    f = WarmupLinear(warmup=4, decay_steps=10, end_factor=0.2)
    assert [round(f(s), 6) for s in (0, 1, 3, 5, 10, 50)] == [0.25, 0.46, 0.76, 0.6, 0.2, 0.2]
    assert WarmupLinear(0, 4000, 0.2)(0) == 1.0  # salad's LinearLR start
    model = torch.nn.Linear(2, 1)
    state = RunState.start(
        model, TrainSettings(regime="multisimilarity", ms_warmup_steps=4, ms_decay_steps=10),
        np.zeros((0, 1), np.int64),
    )  # fmt: skip
    assert isinstance(state.optimizer, torch.optim.AdamW)
    lrs = []
    for _ in range(6):
        lrs.append(state.optimizer.param_groups[0]["lr"])
        state.optimizer.step()
        state.scheduler.step()
    expected = [6e-5 * f(s) for s in range(6)]
    assert np.allclose(lrs, expected, rtol=1e-9, atol=0)


def test_augmentation_follows_its_seed_only():
    images = torch.randn(3, 3, 16, 16).clamp(-2, 2)
    before = torch.get_rng_state()
    a, b, c = augment(images, 1), augment(images, 1), augment(images, 2)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is untouched
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == images.shape


def test_unknown_regime_lists_the_valid_ones():
    with pytest.raises(InputError, match=r"regime='arcface'.*'triplet', 'multisimilarity'"):
        TrainSettings.from_dict({"regime": "arcface"})
    with pytest.raises(InputError, match="ms_images_per_place=1"):
        TrainSettings(regime="multisimilarity", ms_images_per_place=1)


def test_a_triplet_runs_fingerprint_and_checkpoint_identity_are_unchanged():
    spec = run_spec(QUICK)
    digests = {"train": "t", "val": "v"}
    recipe = spec.fingerprint(digests)["recipe"]
    assert not [k for k in recipe if k == "regime" or k.startswith("ms_")]
    assert spec.fingerprint(digests) == run_spec({**QUICK, "regime": "triplet"}).fingerprint(
        digests
    )
    assert "regime" not in run_identity(spec)["train_settings"]
    ms = run_spec(MS).fingerprint(digests)
    assert ms["recipe"]["regime"] == "multisimilarity" and ms["recipe"]["ms_beta"] == 50.0
    diffs = fingerprint_differences(ms, run_spec({**MS, "ms_beta": 40.0}).fingerprint(digests))
    assert diffs and "ms_beta" in diffs[0]


def test_config_schema_and_check_accept_the_regime():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["train"] = {**config["train"], "regime": "multisimilarity", "ms_images_per_place": 4}
    schema = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    bad = copy.deepcopy(config)
    bad["train"]["regime"] = "arcface"
    with pytest.raises(Exception, match="arcface"):
        validate(copy.deepcopy(bad), schema)
    validate(config, schema)  # fills in the defaults, as the workflow does
    pipeline.check(copy.deepcopy(config))
    bad = copy.deepcopy(config)
    bad["train"]["regime"] = "arcface"
    with pytest.raises(InputError, match="regime='arcface'"):
        pipeline.check(bad)


def _history(run_dir):
    rows = json.loads((run_dir / "history.json").read_text())
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _files(run_dir):
    skip = ("prefix_cache", "dvclive")
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.is_file() and not any(s in p.parts for s in skip))  # fmt: skip


def test_a_killed_multisimilarity_run_resumes_bit_identically(tiny_city, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    summary = run_training(tiny_city, straight, MS)
    assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    rows = _history(straight)
    assert [r["steps"] for r in rows[1:]] == [2, 2] and rows[1]["places"] == 8
    assert all(np.isfinite(r["loss"]) and r["pairs_mined"] > 0 for r in rows[1:])
    # The same files as a triplet run writes (checkpoints, history, fingerprint).
    triplet = tmp_path / "triplet"
    run_training(tiny_city, triplet, QUICK)
    assert _files(straight) == _files(triplet)

    original, calls = MultiSimilarityTrainer._inputs, []

    def dying(self, images, epoch, step):
        if epoch == 2:
            calls.append(1)
            if len(calls) == 2:  # after one optimiser step of epoch 2
                raise KeyboardInterrupt
        return original(self, images, epoch, step)

    monkeypatch.setattr(MultiSimilarityTrainer, "_inputs", dying)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_city, resumed, MS)
    monkeypatch.setattr(MultiSimilarityTrainer, "_inputs", original)
    assert run_training(tiny_city, resumed, MS)["resumed"]
    assert _history(resumed) == rows
    a = torch.load(straight / "state" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(resumed / "state" / "checkpoint_last.pt", weights_only=True)
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    for key, state in a["optimizer_state"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[name], b["optimizer_state"]["state"][key][name])
    assert a["scheduler_state"] == b["scheduler_state"]
    assert a["scheduler_state"]["last_epoch"] == 4  # four optimiser steps
