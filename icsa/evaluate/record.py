"""What a pair of descriptor files was made from, and the check that they belong to a run.

``icsa extract --out-record`` writes, beside the descriptors, the checkpoint's model config and
content digest, the evaluation set, and each file's rows, dimension and dtype. ``icsa evaluate
--record --model-spec`` refuses descriptors made from another model (backbone, K, image size,
weights, init seed, lowest trained block), of another evaluation set, or replaced since the
record was written (other rows, dimension or dtype) — the descriptors alone cannot tell: the
32,768-D VGG16 NetVLAD vectors of the wrong run look like any other (issue 16).

Torch-free: ``icsa evaluate`` needs only numpy and faiss.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icsa.arrays import open_npy
from icsa.errors import InputError
from icsa.io import file_digest, read_json, write_json
from icsa.spec import check_config

RECORD_VERSION = 1
SIDES = ("db", "q")


def _shape(path: Path) -> dict[str, Any]:
    """Rows, dimension and dtype from the ``.npy`` header (the data are not read)."""
    array = open_npy(path, "descriptors")
    if array.ndim != 2:
        raise InputError(f"descriptors {path}: shape {list(array.shape)}, expected [rows, dim]")
    return {"rows": int(array.shape[0]), "dim": int(array.shape[1]), "dtype": str(array.dtype)}


def write_record(
    path: str | os.PathLike,
    model_config: dict[str, Any],
    checkpoint: str | os.PathLike,
    dataset: str,
    split: str,
    image_size: tuple[int, int],
    files: dict[str, str | os.PathLike],
) -> None:
    """Record ``files`` ({"db": path, "q": path}, either may be absent) as made from
    ``checkpoint`` (whose ``model_config`` it holds) on ``dataset``'s ``split``."""
    config = dict(model_config)
    config["image_size"] = list(config["image_size"])
    write_json(
        path,
        {
            "version": RECORD_VERSION,
            "model": config,
            "checkpoint": {"file": Path(checkpoint).name, "sha256": file_digest(checkpoint)},
            "evalset": {"dataset": dataset, "split": split},
            "image_size": list(image_size),
            "files": {side: {"file": Path(p).name, **_shape(Path(p))} for side, p in files.items()},
        },
    )


def check_record(
    path: str | os.PathLike,
    descriptors: dict[str, str | os.PathLike],
    dataset: str,
    split: str,
    expected_model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Raise InputError unless the record at ``path`` covers ``descriptors`` ({"db": ...,
    "q": ...}) as they are now, of ``dataset``'s ``split``, made from ``expected_model`` (a
    ModelSpec's dict; every key must match). Returns the record."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"descriptors record {path}: not found, expected one by `icsa extract --out-record`"
        )
    try:
        record = read_json(path)
        version, model, files = record["version"], record["model"], record["files"]
        evalset = (record["evalset"]["dataset"], record["evalset"]["split"])
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(
            f"descriptors record {path}: not a record of `icsa extract` ({err!r}), expected "
            "keys version, model, checkpoint, evalset, files"
        ) from err
    if version != RECORD_VERSION:
        raise InputError(f"descriptors record {path}: version {version}, expected {RECORD_VERSION}")
    if evalset != (dataset, split):
        raise InputError(
            f"descriptors record {path}: made on {evalset[0]} {evalset[1]}, expected {dataset} "
            f"{split}"
        )
    if expected_model is not None:
        check_config(model, expected_model, f"descriptors record {path}")
    for side, file in descriptors.items():
        if side not in files:
            raise InputError(f"descriptors record {path}: has no {side} file, expected {file}")
        now, then = _shape(Path(file)), files[side]
        changed = [f"{k} {then[k]} → {now[k]}" for k in now if then.get(k) != now[k]]
        if changed:
            raise InputError(
                f"descriptors {file}: changed since {path} was written ({', '.join(changed)}); "
                "extract again"
            )
    return record
