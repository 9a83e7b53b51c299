"""`icsa prepare`: get a dataset folder ready before any expensive step.

    icsa prepare check --root DIR --dataset pitts30k|pitts250k|tokyotm|tokyo247
                       [--splits S ...] [--index-out PATH] [--workers N] [--threads N]
    icsa prepare synthetic --out DIR [--seed 0] [--settings JSON|@FILE] [--threads N]

``check`` verifies that every image a split references exists and decodes and that the counts
agree, prints one line per split and writes the index JSON the later steps read. ``synthetic``
renders the embedded synthetic city (Pittsburgh-like and TokyoTM-like) in the NetVLAD layout.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from icsa.data.layouts import DATASETS, LAYOUTS, load_split
from icsa.errors import InputError
from icsa.io import parse_json_object
from icsa.utils import set_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    prepare = subparsers.add_parser("prepare", help="check a dataset folder or make synthetic data")
    sub = prepare.add_subparsers(dest="prepare_command", required=True)

    check = sub.add_parser("check", help="verify a NetVLAD-layout dataset and write its index")
    check.add_argument("--root", required=True, type=Path, help="the dataset folder")
    check.add_argument("--dataset", required=True, choices=DATASETS)
    check.add_argument("--splits", nargs="+", default=None, help="default: all of the dataset")
    check.add_argument(
        "--index-out", type=Path, default=None,
        help="index JSON to write (default results/datasets/<dataset>.json)",
    )  # fmt: skip
    check.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1),
        help="processes that decode images (default: min(4, CPUs))",
    )  # fmt: skip
    check.add_argument("--threads", type=int, default=1, help="torch threads")
    check.set_defaults(func=_check)

    synth = sub.add_parser("synthetic", help="render the embedded synthetic city")
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--settings", default=None,
        help="CitySettings overrides as a JSON object, or @FILE holding one",
    )  # fmt: skip
    synth.add_argument("--threads", type=int, default=1, help="torch threads")
    synth.set_defaults(func=_synthetic)


def _check(args: argparse.Namespace) -> int:
    from icsa.data.check import check_dataset, summary_lines

    set_threads(args.threads)
    if args.workers < 1:
        raise InputError(f"--workers = {args.workers}, expected at least 1")
    if not args.root.is_dir():
        from icsa.pipeline import missing_root_message  # what the workflow warned at parse time

        raise InputError(missing_root_message(args.dataset, args.root))
    index_out = args.index_out or Path("results/datasets") / f"{args.dataset}.json"
    index = check_dataset(
        args.root, args.dataset, splits=args.splits, workers=args.workers, index_out=index_out
    )
    for line in summary_lines(index):
        print(line)
    print(f"all images exist and decode; index written to {index_out}")
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    overrides = {} if args.settings is None else parse_json_object(args.settings, "--settings")
    # Imported here: the generator is heavy and the rest of the CLI must not depend on it.
    from icsa.data import synthetic

    settings = synthetic.CitySettings.from_dict(overrides) if overrides else None
    summary = synthetic.generate(Path(args.out), int(args.seed), settings)
    print(json.dumps(summary, indent=2, default=str))
    for dataset in DATASETS:
        if (Path(args.out) / dataset).is_dir():
            for split in LAYOUTS[dataset].mats:
                print(load_split(Path(args.out) / dataset, dataset, split))
    return 0
