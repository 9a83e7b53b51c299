"""Triplet training end to end on a tiny rendered street: learning, mining radii, errors, cache.

The cities come from tests/helpers/city.py (``make_street_city``; the ``tiny_city`` fixture).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from icsa.cli import main
from icsa.errors import InputError
from icsa.evaluate.recall import recall_at_n
from icsa.spec import ModelSpec
from icsa.step_settings import KMeansSettings
from icsa.train.job import RunOptions
from icsa.train.kmeans import compute_centroids
from icsa.train.loop import NonFiniteLossError
from icsa.train.mining import HardNegativeMiner
from icsa.train.prefix_cache import InputSource, plan_prefix_cache
from tests.helpers.city import QUICK, make_street_city, make_trainer, run_spec, run_training

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def learn_city(tmp_path_factory):
    root = make_street_city(
        tmp_path_factory.mktemp("learn"), size=LEARN_SIZE, train_q=120, val_q=200
    )
    cents = root / "centroids.npz"
    model = ModelSpec("vgg16", "none", 4, LEARN_SIZE)
    compute_centroids(model, root, "pitts30k", "train", cents, KMeansSettings(80, iterations=50))
    return root, cents


LEARN_SIZE = (48, 48)


def test_training_from_block5_beats_the_untrained_model(learn_city, tmp_path):
    """VGG16+NetVLAD (random init, K=4) trained from conv5: one epoch over 120 queries.

    Measured on this city (200 val queries): untrained R@1 0.52; after the epoch 0.665, and
    0.685 / 0.665 / 0.655 with mining seeds 1 / 2 / 3 (run-to-run std ≈ 0.012). A gain of 0.08
    is far outside that noise and outside the binomial std of a 200-query recall (≈ 0.035).
    """
    settings = {"epochs": 1, "lr": 0.01, "neg_samples": 100, "neg_kept": 5}
    out = run_training(
        learn_city, tmp_path / "run", settings, image_size=LEARN_SIZE, attention="none"
    )
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    untrained, trained = history[0], history[-1]
    assert trained["recall@1"] >= untrained["recall@1"] + 0.08, history
    assert trained["recall@5"] > untrained["recall@5"], history
    assert trained["queries_used"] >= 100 and trained["triplets"] > 0
    assert out["best_epoch"] == 1


def test_mined_triplets_respect_the_radii(tiny_city, tmp_path, monkeypatch):
    """Spy on the real miner during a training epoch: positives ≤ 10 m, negatives > 25 m."""
    seen = []
    original = HardNegativeMiner.mine_batch

    def spy(self, queries, *args, **kwargs):
        triplets = original(self, queries, *args, **kwargs)
        seen.extend((self.geometry, t) for t in triplets if t is not None)
        return triplets

    monkeypatch.setattr(HardNegativeMiner, "mine_batch", spy)
    run_training(tiny_city, tmp_path / "run", {**QUICK, "validate_untrained": False})
    from icsa.data import load_split

    db = load_split(tiny_city[0], "pitts30k", "train").db
    assert len(seen) >= 10
    for _, t in seen:
        q = db.q_utm[t.query]
        assert np.linalg.norm(db.db_utm[t.positive] - q) <= 10.0
        assert np.all(np.linalg.norm(db.db_utm[t.negatives] - q, axis=1) > 25.0)
        assert 1 <= len(t.negatives) <= 5


def test_nonfinite_loss_stops_with_the_step(tiny_city, tmp_path):
    # An infinite lr turns the weights into inf/NaN at the first step: the second step's loss
    # is NaN (the mining cache is only refreshed every 16 queries, so mining still works).
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2: loss is nan"):
        run_training(tiny_city, tmp_path / "run", {**QUICK, "lr": float("inf")})
    # the epoch-0 checkpoint written before training is intact
    ck = torch.load(tmp_path / "run" / "state" / "checkpoint_last.pt", weights_only=True)
    assert ck["epoch"] == 0


def test_bad_centroids_or_state_of_another_run_are_input_errors(tiny_city, tmp_path):
    with pytest.raises(InputError, match="centroids file .* not found"):
        run_training(tiny_city, tmp_path / "a", centroids=tmp_path / "none.npz")
    with pytest.raises(InputError, match=r"expected \(8, 512\)"):
        run_training(tiny_city, tmp_path / "a", num_clusters=8)
    with pytest.raises(InputError, match="sampled through backbone, expected se"):
        run_training(
            tiny_city, tmp_path / "c", attention="se"
        )  # SE needs centroids made through it
    run = tmp_path / "b"
    quick = {**QUICK, "validate_untrained": False}
    run_training(tiny_city, run, quick)
    # The run folder holds another run's state: an error naming the differences (on request)...
    with pytest.raises(InputError, match="model.attention: was 'icsa', now 'ch'"):
        run_training(tiny_city, run, quick, attention="ch", on_mismatch="error")
    with pytest.raises(InputError, match="recipe.lr: was 0.01, now 0.02"):
        run_training(tiny_city, run, {**quick, "lr": 0.02}, on_mismatch="error")
    assert run_training(tiny_city, run, quick, on_mismatch="error")["resumed"]  # the same run
    # ... or, by default (the workflow's), a clean restart: one epoch, trained with lr 0.02.
    summary = run_training(tiny_city, run, {**quick, "lr": 0.02})
    assert not summary["resumed"] and summary["epochs"] == 1
    checkpoint = torch.load(run / "state" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["train_settings"]["lr"] == 0.02 and len(checkpoint["history"]) == 1


# What every checkpoint holds (docs/architecture.md): the run state, and whose run it is.
CHECKPOINT_KEYS = {
    "train_settings", "seed", "dataset", "model_state", "model_config", "epoch",
    "optimizer_state", "scheduler_state", "scaler_state", "rng_state", "best_recall",
    "initial_weight_norm", "best_epoch", "history", "mining_state", "early_stop",
}  # fmt: skip


def test_checkpoints_say_whose_run_they_are_from_the_run_spec(tiny_city, tmp_path):
    settings = {**QUICK, "validate_untrained": False}
    run_training(tiny_city, tmp_path / "run", settings, seed=3)
    spec = run_spec(settings, seed=3)
    best = torch.load(tmp_path / "run" / "checkpoint_best.pt", weights_only=True)
    last = torch.load(tmp_path / "run" / "state" / "checkpoint_last.pt", weights_only=True)
    assert set(best) == CHECKPOINT_KEYS and set(last) == CHECKPOINT_KEYS | {"best_checkpoint"}
    for checkpoint in (best, last, last["best_checkpoint"]):
        assert checkpoint["train_settings"] == spec.recipe.to_dict()
        assert checkpoint["seed"] == 3 and checkpoint["dataset"] == "pitts30k"
    with pytest.raises(InputError, match=r"on_mismatch='keep': expected one of \('restart'"):
        RunOptions(on_mismatch="keep")


def test_prefix_cache_gives_the_recomputed_descriptors(tiny_city, tmp_path):
    recompute = make_trainer(tiny_city, tmp_path / "r", prefix_cache=False)
    exact = make_trainer(tiny_city, tmp_path / "c", prefix_cache_dtype="float32")
    half = make_trainer(tiny_city, tmp_path / "h", prefix_cache_dtype="float16")
    assert not recompute.sources.train_db.cached and exact.sources.train_db.cached
    idx = np.arange(len(exact.sources.train_db))
    ref = recompute.describe(recompute.sources.train_db, idx)
    np.testing.assert_allclose(exact.describe(exact.sources.train_db, idx), ref, atol=1e-6)
    np.testing.assert_allclose(half.describe(half.sources.train_db, idx), ref, atol=2e-2)
    assert sorted(p.name for p in (tmp_path / "c" / "state" / "prefix_cache").iterdir()) == [
        f"{s}-{p}.{e}" for s in ("train", "val") for p in ("db", "q") for e in ("json", "npy")
    ]
    # prefix rows held as a tensor (on the GPU in training; indexing is the same on the CPU)
    src = exact.sources.train_db
    from_file = exact.describe(src, idx)
    src.on_device = torch.from_numpy(np.array(src.prefix))
    order = np.array([3, 0, 3, 1])  # any order, repeats allowed (a mined batch)
    np.testing.assert_array_equal(src.get(order).numpy(), np.asarray(src.prefix[order]))
    np.testing.assert_array_equal(exact.describe(src, idx), from_file)
    # a training step's images decoded by threads: the same batch, in the same order
    plain = recompute.sources.train_db
    threaded = InputSource(plain.dataset, decode_threads=3)
    np.testing.assert_array_equal(threaded.get(order).numpy(), plain.get(order).numpy())
    # over the budget: training inputs first, then validation, while they fit
    assert plan_prefix_cache({"train": 10, "val": 10}, 2**20, 15) == {"train": True, "val": False}
    tight = make_trainer(tiny_city, tmp_path / "t", prefix_cache_budget_mb=1e-6)
    assert not any(getattr(tight.sources, f.name).cached for f in fields(tight.sources))
    assert not (tmp_path / "t" / "state" / "prefix_cache").exists()


def test_validation_counts_what_evaluation_counts(tiny_city, tmp_path):
    """Checkpoint selection applies the validation dataset's evaluation policy: the UTM radius
    for Pittsburgh, and a split's own positive lists (MSLS-val's pIdx) where it carries them."""
    trainer = make_trainer(tiny_city, tmp_path / "run")
    val, vdb = trainer.val, trainer.val.db
    db = trainer.describe(trainer.sources.val_db, np.arange(len(trainer.sources.val_db)))
    q = trainer.describe(trainer.sources.val_q, np.arange(len(trainer.sources.val_q)))
    radius = recall_at_n(db, q, vdb.db_utm, vdb.q_utm, threshold=float(vdb.pos_dist_thr))
    assert trainer.validate() == {f"recall@{n}": r for n, r in radius.items()}
    assert radius[1] < 1 and len(db) == 20
    # Lists that disagree with the radius: each query's nearest (brute force), or farthest, row.
    dist = ((q[:, None, :].astype(np.float64) - db[None]) ** 2).sum(-1)
    trainer.val = replace(val, positives=tuple(np.array([i]) for i in dist.argmin(1)))
    assert trainer.validate()["recall@1"] == 1.0
    trainer.val = replace(val, positives=tuple(np.array([i]) for i in dist.argmax(1)))
    farthest = trainer.validate()  # ranked 20th of 20
    assert farthest == {"recall@1": 0.0, "recall@5": 0.0, "recall@10": 0.0, "recall@20": 1.0}


def test_cli_train_writes_the_run_folder(tiny_city, tmp_path, monkeypatch):
    root, cents = tiny_city
    # Inside a Git repository without DVC, dvclive must not `dvc init` it nor write dvc.yaml.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(QUICK))
    spec = run_spec(QUICK)
    settings.write_text(spec.to_json())
    run = tmp_path / "runs" / spec.id
    common = ["--root", str(root), "--centroids", str(cents), "--run-dir", str(run),
              "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert main(["train", "--spec", f"@{settings}", *common]) == 0
    for name in (
        "checkpoint_best.pt",
        "state/checkpoint_last.pt",
        "state/run.json",
        "history.csv",
        "history.json",
        "dvclive/metrics.json",
    ):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == [".git", "runs", "settings.json"]
    lines = (run / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,lr,loss") and len(lines) == 3  # header, epoch 0, epoch 1
    metrics = json.loads((run / "dvclive" / "metrics.json").read_text())
    assert metrics["step"] == 1 and "recall@5" in metrics["val"]
    from icsa.train import load_model

    model = load_model(
        run / "state" / "checkpoint_last.pt",
        expected={"backbone": "vgg16", "attention": "icsa", "num_clusters": 4},
    )
    assert model.config["lowest_trained_block"] == "5"
    typo = {**spec.to_dict(), "recipe": {"epoch": 1}}
    assert main(["train", "--spec", json.dumps(typo), *common]) == 2
    assert json.loads((run / "state" / "run.json").read_text())["run"] == spec.id


@pytest.mark.parametrize("far", [False, True], ids=["no-queries", "no-positives"])
def test_a_split_without_trainable_queries_is_refused_before_training(tmp_path, capsys, far):
    """Nothing lost, round two: `icsa train` on a training split without queries (or whose
    queries have no positive) exited 0 after 0 steps and saved the untrained model as the best
    epoch 1. GeM: no centroids needed."""
    from icsa.data import read_dbstruct, write_dbstruct
    from icsa.spec import ModelSpec, RunSpec
    from icsa.train import TrainSettings
    from tests.helpers.datasets import make_dataset

    root = tmp_path / "pitts"
    make_dataset(root, "pitts30k", {"train": (8, 3 if far else 0), "val": (5, 2)}, hw=(32, 32))
    mat = root / "datasets" / "pitts30k_train.mat"
    if far:  # every query a kilometre from the database
        db = read_dbstruct(mat)
        write_dbstruct(mat, replace(db, q_utm=db.q_utm + 1000.0))
    model = ModelSpec("vgg16", "none", 4, (32, 32), aggregation="gem")
    spec = RunSpec("pitts30k", model, TrainSettings(**QUICK), 0)
    run = tmp_path / "run"
    argv = ["train", "--spec", spec.to_json(), "--root", str(root), "--run-dir", str(run),
            "--device", "cpu", "--no-dvclive"]  # fmt: skip
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    queries = "3 queries, 0 with" if far else "0 queries, 0 with"
    assert len(errors) == 1 and errors[0].startswith(f"icsa train: error: {mat}"), errors
    assert "pitts30k-train" in errors[0] and queries in errors[0] and "10 m" in errors[0]
    assert not (run / "checkpoint_best.pt").exists()


def test_batched_mining_keeps_the_training_trajectory(tiny_city, tmp_path, monkeypatch):
    """A run mining each step's queries at once on tensors (mine_batch) ends with the weights,
    negative cache and history of the same run mining query by query on numpy (the code before
    mining moved to the training device): bit for bit on CPU."""
    settings = {**QUICK, "epochs": 2, "validate_untrained": False}
    run_training(tiny_city, tmp_path / "batched", settings)

    def per_query(self, queries, q_desc, db_desc, rng):
        q_np, db_np = q_desc.cpu().numpy(), db_desc.cpu().numpy()
        return [self.mine(q, q_np[i], db_np, rng) for i, q in enumerate(queries)]

    monkeypatch.setattr(HardNegativeMiner, "mine_batch", per_query)
    run_training(tiny_city, tmp_path / "reference", settings)
    a, b = (
        torch.load(tmp_path / run / "state" / "checkpoint_last.pt", weights_only=True)
        for run in ("batched", "reference")
    )
    assert a["epoch"] == b["epoch"] == 2
    for key, value in b["model_state"].items():
        assert torch.equal(a["model_state"][key], value), key
    assert torch.equal(a["mining_state"]["neg_cache"], b["mining_state"]["neg_cache"])
    assert [row["loss"] for row in a["history"]] == [row["loss"] for row in b["history"]]
    assert a["history"][-1]["triplets"] > 0 and (a["mining_state"]["neg_cache"] >= 0).any()
