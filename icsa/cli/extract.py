"""`icsa extract`: descriptors of a split's database and query images, streamed to ``.npy``.

    icsa extract --checkpoint CKPT --root DIR --dataset pitts30k --split test
                 --out-db X-db.npy --out-q X-q.npy [--batch-size 16] [--workers 0]
                 [--dtype float32|float16] [--device auto] [--threads N] [--image-size H W]
                 [--fast-inference off|auto|on] [--memory-budget-mb MB] [--model-spec JSON|@FILE]
                 [--out-record X.json]
    icsa extract --checkpoint CKPT --images DIR --out X.npy [options as above]

The second form describes any folder of images (recursive, sorted; icsa.evaluate.folder): row
i of ``X.npy`` is the image on line i of ``X.txt``, its path relative to DIR; ``icsa retrieve``
matches two such sets.

The image size defaults to the checkpoint's model config. ``--model-spec`` (an
icsa.spec.ModelSpec as JSON; the workflow passes the run's) guards against extracting with the
checkpoint of another model: every key is compared with the checkpoint's model config.
``--out-record`` writes what the descriptors were made from (icsa.evaluate.record), which
``icsa evaluate --record`` checks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icsa.cli.dataset_flags import add_dataset_flags
from icsa.errors import InputError
from icsa.fast_inference import MODES
from icsa.step_settings import DTYPES, ExtractSettings
from icsa.utils import resolve_device, set_threads

FAST_MODES = MODES
# The defaults of the workflow's `extract:` section (icsa.step_settings), torch-free.
DEFAULTS = ExtractSettings()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extract", help="descriptors of a split's images → .npy files")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint of `icsa train`")
    p.add_argument("--root", type=Path, default=None, help="the dataset folder")
    add_dataset_flags(p, required=False)
    p.add_argument("--split", default=None, help="e.g. test, val")
    p.add_argument("--out-db", type=Path, default=None, help="database descriptors .npy")
    p.add_argument("--out-q", type=Path, default=None, help="query descriptors .npy")
    p.add_argument("--images", type=Path, default=None,
                   help="instead of a dataset: every image under this folder")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="with --images: descriptors .npy (names: the same path, .txt)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument(
        "--workers",
        type=int,
        default=DEFAULTS.workers,
        help="DataLoader worker processes (default %(default)s)",
    )
    p.add_argument("--dtype", choices=DTYPES, default=DEFAULTS.dtype)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
        help="default: the checkpoint's model config",
    )  # fmt: skip
    p.add_argument(
        "--fast-inference", choices=FAST_MODES, default=DEFAULTS.fast_inference,
        help="auto: bfloat16 + channels_last where the device has bfloat16 instructions; "
        "on: required; off: float32 (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--memory-budget-mb", type=float, default=None, help="rows mapped at once")
    p.add_argument("--model-spec", default=None, help="ModelSpec the checkpoint must hold (JSON)")
    p.add_argument(
        "--out-record", type=Path, default=None,
        help="JSON record of the model, checkpoint and rows behind the descriptors",
    )  # fmt: skip
    p.set_defaults(func=_extract)


def _check_mode(args: argparse.Namespace) -> None:
    """Either a dataset split (--root --dataset --split, --out-db/--out-q) or --images/--out."""
    dataset_flags = {"--root": args.root, "--dataset": args.dataset, "--split": args.split,
                     "--out-db": args.out_db, "--out-q": args.out_q}  # fmt: skip
    if args.images is not None:
        given = [flag for flag, value in dataset_flags.items() if value is not None]
        if given or args.out is None:
            raise InputError(
                f"icsa extract --images: got {given or 'no --out'}, expected --out X.npy and "
                "none of --root/--dataset/--split/--out-db/--out-q"
            )
        return
    if args.out is not None:
        raise InputError("icsa extract --out: needs --images DIR (a split writes --out-db/--out-q)")
    missing = [flag for flag in ("--root", "--dataset", "--split") if not dataset_flags[flag]]
    if missing:
        raise InputError(
            f"icsa extract: missing {', '.join(missing)}, expected --root, --dataset and "
            "--split (or --images DIR --out X.npy)"
        )
    if args.out_db is None and args.out_q is None:
        raise InputError("icsa extract: give --out-db and/or --out-q, expected at least one")


def _extract(args: argparse.Namespace) -> int:
    _check_mode(args)
    from icsa.data import load_split, split_datasets
    from icsa.evaluate.extract import extract_descriptors
    from icsa.fast_inference import use_bf16
    from icsa.train.checkpoint import load_model

    set_threads(args.threads)
    expected = None
    if args.model_spec is not None:
        from icsa.spec import ModelSpec

        expected = ModelSpec.from_flag(args.model_spec).to_dict()
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location=device, expected=expected)
    image_size = tuple(args.image_size or model.config["image_size"])
    if args.images is not None:
        from icsa.data import ImageDataset
        from icsa.evaluate.folder import list_images, names_file, write_names

        names = list_images(args.images)
        folder = ImageDataset([args.images / n for n in names], image_size, name=str(args.images))
        jobs, place = [("images", folder, args.out)], f"{args.images}"
    else:
        split = load_split(args.root, args.dataset, args.split, args.layout)
        db_set, q_set = split_datasets(split, image_size)
        jobs, place = [("db", db_set, args.out_db), ("q", q_set, args.out_q)], repr(split)
    written = {}
    for side, dataset, out in jobs:
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
            fast=use_bf16(args.fast_inference, device, "--fast-inference"),
            memory_budget_mb=args.memory_budget_mb,
        )
        print(f"{place}: {len(dataset)} descriptors at {image_size[0]}x{image_size[1]} → {out}")
        written[side] = out
    if args.images is not None:
        write_names(names_file(args.out), names)
        print(f"{len(names)} image names → {names_file(args.out)}")
    if args.out_record is not None:
        from icsa.evaluate.record import write_record

        write_record(args.out_record, model.config, args.checkpoint, args.dataset, args.split,
                     image_size, written)  # fmt: skip
    return 0
