"""Checkpoints: plain data (tensors, numbers, strings, lists, dicts) written atomically.

A checkpoint is data, not code (docs/architecture.md): it loads with
``torch.load(weights_only=True)``, so RNG states are stored as tensors and lists of ints rather
than pickled numpy objects. Keys:
``model_state``, ``model_config``, ``train_settings``, ``epoch``, ``optimizer_state``,
``scheduler_state``, ``rng_state``, ``best_recall``, ``history`` and, for resuming,
``mining_state`` and ``early_stop``; whose run it is (``train_settings``, ``seed``, ``dataset``)
comes from the run's RunSpec alone (:func:`run_identity`).
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icsa.errors import InputError
from icsa.io import atomic_path
from icsa.spec import RunSpec, check_config

REQUIRED_KEYS = ("model_state", "model_config")


def run_identity(spec: RunSpec) -> dict[str, Any]:
    """The keys of every checkpoint that say whose run it is, from the run's one specification
    (the model's own ``model_config`` is written beside them by the run state)."""
    return {"train_settings": spec.recipe.to_dict(), "seed": int(spec.seed),
            "dataset": spec.dataset}  # fmt: skip


def get_rng_state() -> dict[str, Any]:
    """Torch CPU, numpy global and Python ``random`` states as weights_only-loadable data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["name"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` with ``torch.save`` to a temporary sibling, then rename it."""
    with atomic_path(path) as tmp:
        write_checkpoint(tmp, checkpoint, path)


def write_checkpoint(
    tmp: Path, checkpoint: dict[str, Any], path: str | os.PathLike | None = None
) -> None:
    """``torch.save`` into the temporary ``tmp`` of ``path``. A full disk makes torch.save fail
    deep in its zip writer ("unexpected pos ..."); that is reported with the path and the free
    space (the caller's atomic_path removes the temporary)."""
    path = Path(path if path is not None else tmp)
    try:
        torch.save(checkpoint, tmp)
    except (RuntimeError, OSError) as err:
        free = shutil.disk_usage(path.parent).free
        raise InputError(
            f"{path}: could not write the checkpoint ({free:,} bytes free in "
            f"{path.parent}; torch: {str(err).splitlines()[0]}); free space and rerun"
        ) from err


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``); a bad file is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found, expected a file written by `icsa train`")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise InputError(
            f"checkpoint {path}: cannot be read as a torch checkpoint ({err})"
        ) from err
    if not isinstance(checkpoint, dict):
        raise InputError(f"checkpoint {path}: holds a {type(checkpoint).__name__}, expected a dict")
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise InputError(f"checkpoint {path}: missing keys {missing}, expected {REQUIRED_KEYS}")
    return checkpoint


def load_model(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    expected: dict[str, Any] | None = None,
):
    """Rebuild the PlaceModel of a checkpoint (``build_model(**model_config)``) with its weights.

    ``expected`` (e.g. ``{"backbone": "vgg16", "attention": "icsa", "num_clusters": 64}``)
    guards against evaluating the wrong checkpoint: a mismatch is an InputError naming the keys.
    """
    from icsa.models import build_model  # deferred: models import torchvision (slow at startup)

    checkpoint = load_checkpoint(path, map_location)
    config = dict(checkpoint["model_config"])
    if expected:
        check_config(config, expected, f"checkpoint {path}")
    # The state dict overwrites every parameter, so rebuild without fetching pretrained weights.
    config["weights"] = "none"
    config["image_size"] = tuple(config["image_size"])
    model = build_model(**config)
    model.load_state_dict(checkpoint["model_state"])
    model.config = dict(checkpoint["model_config"])
    return model.to(map_location).eval()
