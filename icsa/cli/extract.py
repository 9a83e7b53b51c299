"""`icsa extract`: descriptors of a split's database and query images, streamed to ``.npy``.

    icsa extract --checkpoint CKPT --root DIR --dataset pitts30k --split test
                 --out-db X-db.npy --out-q X-q.npy [--batch-size 16] [--workers 2]
                 [--dtype float32|float16] [--device auto] [--threads N] [--image-size H W]
                 [--autocast-bf16] [--memory-budget-mb MB] [--model-spec JSON|@FILE]

The image size defaults to the checkpoint's model config. ``--model-spec`` (an icsa.spec.ModelSpec
as JSON; the workflow passes the run's) guards against extracting with the checkpoint of another
model: every key is compared with the checkpoint's model config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icsa.data.layouts import DATASETS
from icsa.errors import InputError
from icsa.utils import resolve_device, set_threads

# icsa.evaluate.extract.DTYPES, kept here so that `--help` does not import torch; a test checks
# that the two agree (tests/test_cli_lazy.py).
DTYPES = ("float32", "float16")


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
    p.add_argument("--model-spec", default=None, help="ModelSpec the checkpoint must hold (JSON)")
    p.set_defaults(func=_extract)


def _extract(args: argparse.Namespace) -> int:
    if args.out_db is None and args.out_q is None:
        raise InputError("icsa extract: give --out-db and/or --out-q, expected at least one")
    from icsa.data import load_split, split_datasets
    from icsa.evaluate.extract import extract_descriptors
    from icsa.train.checkpoint import load_model

    set_threads(args.threads)
    expected = None
    if args.model_spec is not None:
        from icsa.io import parse_json_object
        from icsa.spec import ModelSpec

        data = parse_json_object(args.model_spec, "--model-spec")
        expected = ModelSpec.from_dict(data, "--model-spec").to_dict()
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location=device, expected=expected)
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
