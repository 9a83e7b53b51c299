"""A tiny rendered street city in the pitts30k layout, and training runs on it.

``make_street_city`` writes one street of procedurally drawn facades per split; database views
every few metres, queries at random positions with a narrower or wider view and appearance change
(colour cast, exposure, noise, occluders, optionally night). Nearby places look alike, far ones
differ. ``run_training`` trains a RunSpec on it through ``icsa.train.run.train_run``;
``make_trainer`` composes a trainer without training (``prepare_trainer``).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icsa.data import DbStruct, load_split, write_dbstruct
from icsa.models import build_model
from icsa.spec import ModelSpec, RunSpec
from icsa.step_settings import KMeansSettings
from icsa.train import (
    RunContext,
    RunInputs,
    RunOptions,
    TrainSettings,
    prepare_trainer,
    train_run,
)
from icsa.train.kmeans import compute_centroids
from icsa.train.state import STATE_DIR

PX_PER_M = 8


def _facade(rng: np.random.Generator, length_m: float, height: int = 64) -> np.ndarray:
    """[height, length·8, 3] facade strip: buildings with window grids and some signs."""
    width = int(length_m * PX_PER_M)
    img = np.zeros((height, width, 3), np.float32)
    img[: height // 6] = (0.55, 0.7, 0.9)  # sky
    img[-height // 6 :] = (0.3, 0.3, 0.3)  # road
    x = 0
    while x < width:
        bw = int(rng.uniform(5, 12) * PX_PER_M)
        top = int(rng.uniform(0.05, 0.3) * height)
        img[top : height - height // 6, x : x + bw] = rng.uniform(0.2, 0.9, 3)
        window = rng.uniform(0, 1, 3)
        ww, wh = rng.integers(4, 9), rng.integers(4, 9)
        sx, sy = ww + rng.integers(3, 8), wh + rng.integers(3, 8)
        for yy in range(top + 3, height - height // 6 - wh, sy):
            for xx in range(x + 2, x + bw - ww, sx):
                img[yy : yy + wh, xx : xx + ww] = window
        if rng.random() < 0.4:  # a sign board
            y0 = top + rng.integers(2, 10)
            img[y0 : y0 + 6, x + 4 : x + bw - 4] = rng.uniform(0, 1, 3)
        x += bw
    return img


def _view(facade, x_m, width_m, size, rng=None, night=0.0) -> np.ndarray:
    h, w = size
    c, half = x_m * PX_PER_M, width_m * PX_PER_M / 2
    cols = np.clip(np.linspace(c - half, c + half, w).astype(int), 0, facade.shape[1] - 1)
    img = facade[np.linspace(0, facade.shape[0] - 1, h).astype(int)][:, cols].copy()
    if rng is not None:  # a query: appearance change
        if rng.random() < night:  # dark facades, lit windows
            img = np.where(img.sum(-1, keepdims=True) > 1.5, img, img * 0.25)
        img = img * rng.uniform(0.5, 1.2) * rng.uniform(0.6, 1.4, 3)
        img = img + rng.normal(0, 0.08, img.shape)
        if rng.random() < 0.5:  # an occluder
            ox = rng.integers(0, w - w // 4)
            img[h // 2 :, ox : ox + w // 4] = rng.uniform(0, 1, 3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_street_city(
    root,
    seed: int = 0,
    size=(32, 32),
    spacing: float = 5.0,
    train_len: float = 400.0,
    val_len: float = 300.0,
    train_q: int = 40,
    val_q: int = 40,
    night: float = 0.0,
) -> Path:
    """A pitts30k-layout dataset (train and val) under ``root``; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "queries_real").mkdir(parents=True, exist_ok=True)
    (root / "000").mkdir(parents=True, exist_ok=True)
    for split, length, nq, x0 in (
        ("train", train_len, train_q, 0.0),
        ("val", val_len, val_q, 1000.0),
    ):
        facade = _facade(rng, length + 40)
        db_x = np.arange(20.0, length + 20.0, spacing)
        q_x = rng.uniform(20.0, length + 20.0 - 1e-6, nq)
        db_names = [f"000/{split}_db_{i:04d}.png" for i in range(len(db_x))]
        q_names = [f"{split}_q_{i:04d}.png" for i in range(len(q_x))]
        for name, x in zip(db_names, db_x):
            Image.fromarray(_view(facade, x, 16.0, size)).save(root / name)
        for name, x in zip(q_names, q_x):
            view = _view(facade, x, rng.uniform(13, 19), size, rng, night)
            Image.fromarray(view).save(root / "queries_real" / name)
        write_dbstruct(
            root / "datasets" / f"pitts30k_{split}.mat",
            DbStruct(
                which_set=split,
                db_images=db_names,
                db_utm=np.stack([db_x + x0, 0 * db_x], 1),
                q_images=q_names,
                q_utm=np.stack([q_x + x0, 0 * q_x], 1),
                num_db=len(db_x),
                num_q=len(q_x),
                pos_dist_thr=25.0,
                pos_dist_sq_thr=625.0,
                non_triv_pos_dist_sq_thr=100.0,
            ),
        )
    return root


TINY = (32, 32)


QUICK = {"epochs": 1, "lr": 0.01, "neg_samples": 50, "neg_kept": 5, "cache_refresh": 16}


# The model of most training tests: VGG16 + ICSA, conv5 trained, K=4, 32×32 images.
MODEL = {"backbone": "vgg16", "attention": "icsa", "num_clusters": 4, "image_size": TINY,
         "weights": "none", "init_seed": 0, "lowest_trained_block": "5"}  # fmt: skip


def build_tiny_city(folder: Path) -> tuple[Path, Path]:
    """A small 32×32 city and its centroids (K=4); returns (root, centroids)."""
    root = make_street_city(folder, size=TINY, train_len=150.0, val_len=100.0, train_q=24,
                            val_q=16)  # fmt: skip
    cents = root / "centroids.npz"
    model = ModelSpec(**{**MODEL, "attention": "none"})
    compute_centroids(model, root, "pitts30k", "train", cents, KMeansSettings(20, iterations=10))
    # One frozen-prefix cache for all tests (VGG16 b5, init seed 0); runs copy it, which is how
    # a resumed run reuses it too. test_prefix_cache_* builds its own from scratch.
    make_trainer((root, cents), root / "template", prefix_cache_dtype="float16")
    return root, cents


def run_spec(settings: dict, seed: int = 0, **model) -> RunSpec:
    """A RunSpec on the tiny city: MODEL with ``model``'s changes, the recipe ``settings``."""
    return RunSpec("pitts30k", ModelSpec(**{**MODEL, **model}), TrainSettings(**settings), seed)


def run_training(city, run_dir, settings=QUICK, *, centroids=None, seed=0,
                 enable_dvclive=False, on_mismatch="restart", **model):  # fmt: skip
    """Train (or resume) a run on the tiny city; returns train_run's summary."""
    root, cents = city
    spec = run_spec(settings, seed, **model)
    template = root / "template" / STATE_DIR / "prefix_cache"
    cache = Path(run_dir) / STATE_DIR / "prefix_cache"
    if spec.model.image_size == TINY and template.is_dir() and not cache.exists():
        shutil.copytree(template, cache)
    inputs = RunInputs(root, cents if centroids is None else centroids)
    options = RunOptions(device="cpu", threads=1, enable_dvclive=enable_dvclive,
                         on_mismatch=on_mismatch)  # fmt: skip
    return train_run(spec, inputs, run_dir, options)


def make_trainer(city, run_dir, model: dict | None = None, **settings):
    """A composed TripletTrainer for MODEL (with ``model``'s changes) on the tiny city, the
    recipe ``settings`` (builds its input sources)."""
    root, _ = city
    spec = run_spec(settings, **(model or {}))
    return prepare_trainer(
        build_model(**spec.model.build_args()), load_split(root, "pitts30k", "train"),
        load_split(root, "pitts30k", "val"), spec,
        RunContext(run_dir, torch.device("cpu"), enable_dvclive=False),
    )  # fmt: skip


@contextlib.contextmanager
def killed_in_epoch_2(after_steps: int = 2) -> Iterator[None]:
    """A training inside this block is killed in epoch 2 once ``after_steps`` optimiser steps
    have changed its weights in memory, as SIGKILL would (nothing of epoch 2 reaches the disk):
    its ``KeyboardInterrupt`` must be expected by the caller. The loop is restored on exit."""
    from icsa.train.loop import TripletTrainer

    original, calls = TripletTrainer._loss, []

    def dying(self, triplets):
        if self.state.epoch == 1:
            calls.append(1)
            if len(calls) == after_steps + 1:
                raise KeyboardInterrupt
        return original(self, triplets)

    TripletTrainer._loss = dying
    try:
        yield
    finally:
        TripletTrainer._loss = original
