"""`icsa extract`: descriptors of a split's database and query images, streamed to ``.npy``.

    icsa extract --checkpoint CKPT --root DIR --dataset pitts30k --split test
                 --out-db X-db.npy --out-q X-q.npy [--batch-size 16] [--workers 2]
                 [--dtype float32|float16] [--device auto] [--threads N] [--image-size H W]
                 [--autocast-bf16] [--memory-budget-mb MB] [--run RUN] [--expect KEY=VALUE ...]

The image size defaults to the checkpoint's model config. ``--run`` (a run name such as
``pitts30k-vgg16-icsa-b5-s0``) and ``--expect`` guard against extracting with the checkpoint of
another model: the expected config keys are compared with the checkpoint's.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from icsa.data.layouts import DATASETS
from icsa.errors import InputError
from icsa.utils import resolve_device, set_threads

# icsa.evaluate.extract.DTYPES, kept here so that `--help` does not import torch; a test checks
# that the two agree (tests/test_cli_lazy.py).
DTYPES = ("float32", "float16")

# docs/architecture.md, "Run naming": {dataset}-{backbone}-{attention}-b{block}-s{seed}
RUN_RE = re.compile(
    r"^(?P<dataset>[^-]+)-(?P<backbone>[^-]+)-(?P<attention>[^-]+)-b(?P<block>[^-]+)-s(?P<seed>\d+)$"
)


def expected_from_run(run: str) -> dict[str, Any]:
    """The model-config keys a run name fixes (backbone, attention, lowest trained block)."""
    match = RUN_RE.match(run)
    if match is None:
        raise InputError(
            f"--run {run!r}: expected {{dataset}}-{{backbone}}-{{attention}}-b{{block}}-s{{seed}}, "
            "e.g. pitts30k-vgg16-icsa-b5-s0"
        )
    return {
        "backbone": match["backbone"],
        "attention": match["attention"],
        "lowest_trained_block": match["block"],
    }


def parse_expect(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is read as JSON when it parses (64, [480, 640]), else text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--expect {item!r}: expected KEY=VALUE, e.g. num_clusters=64")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extract", help="descriptors of a split's images → .npy files")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint of `icsa train`")
    p.add_argument("--root", required=True, type=Path, help="the dataset folder")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--split", required=True, help="e.g. test, val")
    p.add_argument("--out-db", type=Path, default=None, help="database descriptors .npy")
    p.add_argument("--out-q", type=Path, default=None, help="query descriptors .npy")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
        help="default: the checkpoint's model config",
    )  # fmt: skip
    p.add_argument("--autocast-bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--memory-budget-mb", type=float, default=None, help="rows mapped at once")
    p.add_argument("--run", default=None, help="run name whose model the checkpoint must be")
    p.add_argument("--expect", nargs="*", default=[], metavar="KEY=VALUE",
                   help="model-config values the checkpoint must have")  # fmt: skip
    p.set_defaults(func=_extract)


def _extract(args: argparse.Namespace) -> int:
    if args.out_db is None and args.out_q is None:
        raise InputError("icsa extract: give --out-db and/or --out-q, expected at least one")
    from icsa.data import load_split, split_datasets
    from icsa.evaluate.extract import extract_descriptors
    from icsa.train.checkpoint import load_model

    set_threads(args.threads)
    expected = expected_from_run(args.run) if args.run else {}
    expected.update(parse_expect(args.expect))
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location=device, expected=expected or None)
    image_size = tuple(args.image_size or model.config["image_size"])
    split = load_split(args.root, args.dataset, args.split)
    db_set, q_set = split_datasets(split, image_size)
    for dataset, out in ((db_set, args.out_db), (q_set, args.out_q)):
        if out is None:
            continue
        extract_descriptors(
            model,
            dataset,
            out,
            batch_size=args.batch_size,
            num_workers=args.workers,
            dtype=args.dtype,
            device=device,
            autocast_bf16=args.autocast_bf16,
            memory_budget_mb=args.memory_budget_mb,
        )
        print(f"{split!r}: {len(dataset)} descriptors at {image_size[0]}x{image_size[1]} → {out}")
    return 0
