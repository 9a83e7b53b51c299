"""The flags every command that reads a dataset shares: ``--dataset`` and ``--layout``.

A dataset name is free in the benchmark layout (msls, nordland, …); in the NetVLAD layout it must
be one the layout knows, which :func:`icsa.data.layouts.get_layout` checks when the split loads
(one message listing the known names, exit 2).
"""

from __future__ import annotations

import argparse
import re

from icsa.data.layouts import DATASETS, DEFAULT_LAYOUT, LAYOUT_KINDS
from icsa.registry import NAME


def dataset_name(text: str) -> str:
    if not re.fullmatch(NAME, text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected lower-case letters and digits (e.g. {', '.join(DATASETS)})"
        )
    return text


def add_dataset_flags(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--dataset NAME`` and ``--layout netvlad|benchmark|msls`` on ``parser``."""
    parser.add_argument(
        "--dataset", required=required, default=None, type=dataset_name,
        help=f"dataset name ({', '.join(DATASETS)} in the netvlad layout; any in benchmark)",
    )  # fmt: skip
    parser.add_argument(
        "--layout", choices=LAYOUT_KINDS, default=DEFAULT_LAYOUT,
        help="netvlad: datasets/*.mat + image folders; benchmark: images/{train,val,test}/"
        "{database,queries}/@east@north@…@.jpg; msls: MSLS-val's train_val/ + msls_val_*.npy "
        "(default: %(default)s)",
    )  # fmt: skip


def add_layout_flag(parser: argparse.ArgumentParser) -> None:
    """Only ``--layout`` (commands whose dataset name comes from elsewhere, e.g. a run spec)."""
    parser.add_argument(
        "--layout", choices=LAYOUT_KINDS, default=DEFAULT_LAYOUT,
        help="layout of the dataset root (default: %(default)s)",
    )  # fmt: skip
