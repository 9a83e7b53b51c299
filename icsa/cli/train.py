"""`icsa train`: weakly supervised triplet training of one run (resumes or restarts by itself).

icsa train --spec RUNSPEC-JSON-or-@file --root DIR --centroids C.npz --run-dir results/runs/RUN
    [--val DATASET-SPLIT --val-root DIR [--val-layout L]]
    [--device auto] [--threads N] [--on-mismatch restart|error] [--wait] [--no-dvclive]

The spec is an icsa.spec.RunSpec as JSON ({"dataset", "model": ModelSpec, "recipe":
TrainSettings, "seed"}); the workflow writes one per job. Whether the run folder's
state is resumed is decided from its recorded fingerprint (icsa/train/run.py). One process
trains a run folder at a time: a second one stops with the holder's pid, or with --wait waits.
"""

from __future__ import annotations

import argparse
import json
import logging

from icsa.cli.dataset_flags import add_layout_flag
from icsa.data.layouts import DEFAULT_LAYOUT, LAYOUT_KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one run with triplet loss (resumable)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--spec", required=True, help="RunSpec as a JSON object, or @file.json")
    p.add_argument("--root", required=True, help="dataset root")
    add_layout_flag(p)
    p.add_argument(
        "--centroids", default=None,
        help="output of `icsa kmeans` (NetVLAD runs; GeM runs take none)",
    )  # fmt: skip
    p.add_argument(
        "--val", default=None, metavar="DATASET-SPLIT",
        help="validate on this split of another dataset (with --val-root); default: the "
        "training dataset's val split",
    )  # fmt: skip
    p.add_argument("--val-root", default=None, help="root of the --val dataset")
    p.add_argument("--val-layout", choices=LAYOUT_KINDS, default=DEFAULT_LAYOUT,
                   help="layout of the --val dataset")  # fmt: skip
    p.add_argument("--run-dir", required=True, help="run folder (checkpoints, history, state/)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--on-mismatch",
        choices=("restart", "error"),
        default="restart",
        help="state made by another run: start again (default) or stop with the differences",
    )
    p.add_argument(
        "--wait", action="store_true",
        help="if another process trains this run folder, wait for it instead of stopping",
    )  # fmt: skip
    p.add_argument("--no-dvclive", action="store_true", help="skip dvclive logging")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from icsa.errors import InputError
    from icsa.io import parse_json_object
    from icsa.spec import RunSpec
    from icsa.train.job import RunInputs, RunOptions, SplitSource
    from icsa.train.run import train_run  # deferred: keeps `icsa --help` fast

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    source = args.spec[1:] if args.spec.startswith("@") else "--spec"
    spec = RunSpec.from_dict(parse_json_object(args.spec, "--spec"), source)
    options = RunOptions(
        device=args.device,
        threads=args.threads,
        enable_dvclive=not args.no_dvclive,
        on_mismatch=args.on_mismatch,
        wait=args.wait,
    )
    validation = None
    if (args.val is None) != (args.val_root is None):
        raise InputError(
            f"--val = {args.val!r}, --val-root = {args.val_root!r}: expected both or neither"
        )
    if args.val is not None:
        if "-" not in args.val:
            raise InputError(f"--val = {args.val!r}: expected DATASET-SPLIT, e.g. pitts30k-val")
        dataset, split = args.val.split("-", 1)
        validation = SplitSource(args.val_root, dataset, split, args.val_layout)
    inputs = RunInputs(args.root, args.centroids, args.layout, validation)
    summary = train_run(spec, inputs, args.run_dir, options)
    print(json.dumps(summary, default=str))
    return 0
