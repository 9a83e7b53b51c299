"""Check a dataset folder before any expensive step, and write the index the later steps read.

Every split's dbStruct is read (counts must agree with the arrays), then every image it names
must exist and decode with PIL. Decoding runs in a process pool because real datasets hold
hundreds of thousands of JPEGs. Any failure raises one InputError with how many images failed
and the first few names, and no index is written.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from icsa.data.layouts import DEFAULT_LAYOUT, PlaceSplit, dataset_splits, load_split
from icsa.errors import InputError
from icsa.io import write_json

FIRST_FEW = 5

log = logging.getLogger(__name__)


def probe_image(path: str) -> tuple[str, Any]:
    """``("ok", (H, W))`` when ``path`` decodes fully, else ``("missing"|"broken", reason)``."""
    try:
        with Image.open(path) as img:
            img.load()  # open() reads only the header; load() decodes all pixels
            return "ok", (img.height, img.width)
    except FileNotFoundError:
        return "missing", "no such file"
    except Exception as err:  # noqa: BLE001 — anything PIL cannot decode is a broken image
        return "broken", f"{type(err).__name__}: {err}"


def probe_images(paths: Sequence[str], workers: int) -> list[tuple[str, Any]]:
    """:func:`probe_image` over ``paths`` (in order), with ``workers`` processes."""
    # A bar only where decoding takes a while; small checks keep a clean one-screen summary.
    progress = dict(
        total=len(paths), desc="decode", unit="img", mininterval=5, disable=len(paths) < 1000
    )
    if workers <= 1 or len(paths) < 64:
        return [probe_image(p) for p in tqdm(paths, **progress)]
    chunk = max(16, min(512, len(paths) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(probe_image, paths, chunksize=chunk), **progress))


def _failure_report(root: Path, failures: list[tuple[Path, str, str]], total: int) -> str:
    parts = []
    for kind, verb in (("missing", "are missing"), ("broken", "do not decode")):
        bad = [(p, why) for p, k, why in failures if k == kind]
        if not bad:
            continue
        shown = [
            os.path.relpath(p, root) + ("" if kind == "missing" else f" ({why})")
            for p, why in bad[:FIRST_FEW]
        ]
        parts.append(f"{len(bad)} of {total} images {verb} (first: {', '.join(shown)})")
    return "; ".join(parts)


def _warn_if_empty(split: PlaceSplit) -> None:
    """A warning (legal in a dbStruct, so not an error) for a split without queries or database
    images: training on it runs no step, and evaluating it measures nothing."""
    for what, count in (("queries", split.db.num_q), ("database images", split.db.num_db)):
        if what == "queries" and split.place_labels is not None:
            continue  # labelled places (GSV-Cities) have no queries by design
        if count == 0:
            log.warning("%s (%s): no %s; expected at least one to train or evaluate on it",
                        split.source, split.name, what)  # fmt: skip


def check_dataset(
    root: str | os.PathLike,
    dataset: str,
    splits: Sequence[str] | None = None,
    workers: int = 2,
    index_out: str | os.PathLike | None = None,
    layout: str = DEFAULT_LAYOUT,
) -> dict:
    """Verify ``splits`` of ``dataset`` under ``root`` (in ``layout``); return the index (and
    write it if asked). In the benchmark layout every file name must parse as well.

    The index: ``{"dataset", "root", "layout", "splits": {split: {"name", "source", "which_set",
    "num_db", "num_q", "image_size" ([H, W] or None if mixed), "image_sizes" ({"HxW": count}),
    "ok"}}}``.
    """
    root = Path(root)
    wanted = list(splits) if splits else dataset_splits(root, dataset, layout)
    loaded: list[PlaceSplit] = [load_split(root, dataset, s, layout) for s in wanted]
    for sp in loaded:
        _warn_if_empty(sp)

    # Splits share database images (and TokyoTM mixes them with queries): decode each once.
    unique = sorted({str(p) for sp in loaded for p in (*sp.db_paths, *sp.q_paths)})
    results = dict(zip(unique, probe_images(unique, workers)))
    failures = [(Path(p), kind, info) for p, (kind, info) in results.items() if kind != "ok"]
    if failures:
        raise InputError(f"{root} ({dataset}): {_failure_report(root, failures, len(unique))}")

    index: dict[str, Any] = {
        "dataset": dataset, "root": str(root.resolve()), "layout": layout, "splits": {},
    }  # fmt: skip
    for sp in loaded:
        sizes = Counter(results[str(p)][1] for p in (*sp.db_paths, *sp.q_paths))
        index["splits"][sp.split] = {
            "name": sp.name,
            "source": str(sp.source.resolve()),
            "which_set": sp.db.which_set,
            "num_db": sp.db.num_db,
            "num_q": sp.db.num_q,
            "image_size": list(next(iter(sizes))) if len(sizes) == 1 else None,
            "image_sizes": {f"{h}x{w}": n for (h, w), n in sorted(sizes.items())},
            # Listed more than once: legal in a dbStruct, but it double-counts a place.
            "duplicate_db_images": len(sp.db.db_images) - len(set(sp.db.db_images)),
            "duplicate_q_images": len(sp.db.q_images) - len(set(sp.db.q_images)),
            "ok": True,
        }
    if index_out is not None:
        write_json(index_out, index)
    return index


def summary_lines(index: dict) -> list[str]:
    """The one-screen summary: ``< pitts30k-test - #q: 6816; #db: 10000 >`` per split, then a
    warning for duplicate image names or mixed image sizes."""
    lines = []
    for info in index["splits"].values():
        lines.append(f"< {info['name']} - #q: {info['num_q']}; #db: {info['num_db']} >")
        dup_db, dup_q = info.get("duplicate_db_images", 0), info.get("duplicate_q_images", 0)
        if dup_db or dup_q:
            lines.append(f"  warning: {info['name']} lists {dup_db} database and {dup_q} query "
                         "image names more than once")  # fmt: skip
        if len(info.get("image_sizes", {})) > 1:
            lines.append(f"  warning: {info['name']} mixes image sizes {info['image_sizes']} "
                         "(the network resizes every image to model.image_size)")  # fmt: skip
    return lines
