"""`icsa prepare`: get a dataset folder ready before any expensive step.

    icsa prepare check --root DIR --dataset pitts30k|pitts250k|tokyotm|tokyo247|NAME
                       [--layout netvlad|benchmark|msls] [--splits S ...] [--index-out PATH]
                       [--workers N] [--threads N]
    icsa prepare synthetic --out DIR [--seed 0] [--settings JSON|@FILE] [--layout L] [--threads N]
    icsa prepare convert --root DIR --dataset D --from netvlad|benchmark --to benchmark|netvlad
    icsa prepare positives --root DIR --dataset D --split S --gt GT.npy
                           [--db-names DB.npy --q-names Q.npy]
                         --out DIR [--utm-zone 17T] [--copy]

``check`` verifies that every image a split references exists and decodes and that the counts
agree, prints one line per split and writes the index JSON the later steps read. ``synthetic``
renders the embedded synthetic city (Pittsburgh-like and TokyoTM-like) in either layout;
``convert`` rewrites a dataset from one layout into the other (icsa/data/convert.py).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from icsa import layout
from icsa.cli.dataset_flags import add_dataset_flags, dataset_name
from icsa.data.layouts import (
    DATASETS,
    DEFAULT_LAYOUT,
    WRITABLE_LAYOUTS,
    dataset_splits,
    load_split,
)
from icsa.errors import InputError
from icsa.io import parse_json_object, read_json
from icsa.utils import available_cpus, set_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    prepare = subparsers.add_parser("prepare", help="check a dataset folder or make synthetic data")
    sub = prepare.add_subparsers(dest="prepare_command", required=True)

    check = sub.add_parser("check", help="verify a dataset folder and write its index")
    check.add_argument("--root", required=True, type=Path, help="the dataset folder")
    add_dataset_flags(check)
    check.add_argument("--splits", nargs="+", default=None, help="default: all of the dataset")
    check.add_argument(
        "--index-out", type=Path, default=None,
        help=f"index JSON to write (default {layout.index_file('<dataset>')})",
    )  # fmt: skip
    check.add_argument(
        "--workers", type=int, default=min(4, available_cpus()),
        help="processes that decode images, at most the usable CPUs (default: min(4, CPUs))",
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
    synth.add_argument(
        "--layout", choices=WRITABLE_LAYOUTS, default=DEFAULT_LAYOUT,
        help="write the NetVLAD .mat layout or the benchmark layout (default: %(default)s)",
    )  # fmt: skip
    synth.add_argument("--threads", type=int, default=1, help="torch threads")
    synth.set_defaults(func=_synthetic)

    conv = sub.add_parser("convert", help="convert a dataset between the two layouts")
    conv.add_argument("--root", required=True, type=Path, help="the dataset folder")
    conv.add_argument("--dataset", required=True, type=dataset_name)
    conv.add_argument("--from", dest="source", required=True, choices=WRITABLE_LAYOUTS)
    conv.add_argument("--to", dest="target", required=True, choices=WRITABLE_LAYOUTS)
    conv.add_argument("--out", required=True, type=Path, help="a new or empty folder")
    conv.add_argument(
        "--utm-zone", default=None,
        help="zone written into benchmark names, e.g. 17T (default: the dataset's city, if known)",
    )  # fmt: skip
    conv.add_argument("--copy", action="store_true", help="copy images instead of hard-linking")
    conv.set_defaults(func=_convert)

    pos = sub.add_parser(
        "positives", help="store a reference's per-query positive lists beside a benchmark split"
    )
    pos.add_argument("--root", required=True, type=Path, help="the benchmark-layout dataset")
    pos.add_argument("--dataset", required=True, type=dataset_name)
    pos.add_argument("--split", required=True)
    pos.add_argument(
        "--gt", required=True, type=Path,
        help="per-query lists (an object .npy as gsv-cities' *_gt.npy; read with pickle: "
        "trusted files only)",
    )  # fmt: skip
    pos.add_argument("--db-names", type=Path, default=None, help="the reference's database names")
    pos.add_argument("--q-names", type=Path, default=None, help="the reference's query names")
    pos.set_defaults(func=_positives)


def default_index(dataset: str, root: Path) -> Path:
    """The index the workflow reads (:func:`icsa.layout.index_file`), unless it records another
    folder: checking another folder must not silently replace the workflow's index."""
    index = Path(layout.index_file(dataset))
    try:
        recorded = read_json(index).get("root")
    except (OSError, ValueError, AttributeError):  # none yet, or not an index: ours to write
        return index
    if recorded is not None and Path(recorded) != root.resolve():
        raise InputError(
            f"{index}: the index of {recorded}, not of --root {root}; expected --index-out PATH "
            f"for another folder's index, or delete {index} to replace it"
        )
    return index


def _check(args: argparse.Namespace) -> int:
    from icsa.data.check import check_dataset, summary_lines

    set_threads(args.threads)
    if args.workers < 1:
        raise InputError(f"--workers = {args.workers}, expected at least 1")
    if not args.root.is_dir():
        from icsa.pipeline import missing_root_message  # what the workflow warned at parse time

        raise InputError(missing_root_message(args.dataset, args.root))
    index_out = args.index_out or default_index(args.dataset, args.root)
    index = check_dataset(
        args.root,
        args.dataset,
        splits=args.splits,
        workers=min(args.workers, available_cpus()),  # never more processes than usable CPUs
        index_out=index_out,
        layout=args.layout,
    )
    for line in summary_lines(index):
        print(line)
    print(f"all images exist and decode; index written to {index_out}")
    return 0


def _positives(args: argparse.Namespace) -> int:
    """Write ``images/<split>/positives.npz`` (icsa.data.ground_truth) from a reference's lists."""
    import numpy as np

    from icsa.data.ground_truth import lists_for_split, read_object_lists, write_positives
    from icsa.data.layouts import POSITIVES_FILE

    split = load_split(args.root, args.dataset, args.split, "benchmark")
    names = [None if p is None else np.load(p).tolist() for p in (args.db_names, args.q_names)]
    lists = lists_for_split(
        read_object_lists(args.gt), split.db.db_images, split.db.q_images, *names
    )
    out = Path(split.source) / POSITIVES_FILE
    write_positives(out, lists, split.db.num_db)
    print(f"{split!r}: {sum(len(p) for p in lists)} positives of {len(lists)} queries → {out}")
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    overrides = {} if args.settings is None else parse_json_object(args.settings, "--settings")
    # Imported here: the generator is heavy and the rest of the CLI must not depend on it.
    from icsa.data import synthetic

    settings = synthetic.CitySettings.from_dict(overrides) if overrides else None
    summary = synthetic.generate(Path(args.out), int(args.seed), settings, layout=args.layout)
    print(json.dumps(summary, indent=2, default=str))
    for dataset in DATASETS:
        root = Path(args.out) / dataset
        if root.is_dir():
            for split in dataset_splits(root, dataset, args.layout):
                print(load_split(root, dataset, split, args.layout))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from icsa.data.convert import convert

    zone = None
    if args.utm_zone is not None:
        match = re.fullmatch(r"([0-9]{1,2})([C-HJ-NP-X])", args.utm_zone)
        if not match:
            raise InputError(f"--utm-zone = {args.utm_zone!r}; expected a zone such as 17T")
        zone = (match[1], match[2])
    summary = convert(args.root, args.dataset, args.source, args.target, args.out, zone,
                      link=not args.copy)  # fmt: skip
    for split, counts in summary.items():
        print(f"< {args.dataset}-{split} - #q: {counts['num_q']}; #db: {counts['num_db']} >")
    print(f"{args.root} ({args.source}) written to {args.out} ({args.target})")
    return 0
