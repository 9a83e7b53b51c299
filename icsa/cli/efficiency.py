"""`icsa efficiency`: the paper's Table 2 (attention module size and speed) as JSON.

Example::

    icsa efficiency --channels 512 --height 30 --width 40 --batch-size 1 --repeats 50 \\
        --device cpu --threads 1 --out results/efficiency.json
"""

from __future__ import annotations

import argparse

from icsa.io import write_json
from icsa.step_settings import EfficiencySettings

# The defaults of the workflow's `efficiency:` section (icsa.step_settings): the paper's Table 2.
DEFAULTS = EfficiencySettings()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "efficiency", help="time and size each attention module (paper Table 2)"
    )
    p.add_argument("--channels", type=int, default=DEFAULTS.channels)
    p.add_argument("--height", type=int, default=DEFAULTS.height)
    p.add_argument("--width", type=int, default=DEFAULTS.width)
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--repeats", type=int, default=DEFAULTS.repeats)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time (CPU only)"
    )
    p.add_argument(
        "--modules",
        default=None,
        help="comma-separated attention names (plus icsa-folded); default: every module",
    )
    p.add_argument("--out", required=True, help="output JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from icsa.analysis.efficiency import default_modules, environment, measure_modules

    torch.set_num_threads(args.threads)
    modules = ",".join(default_modules()) if args.modules is None else args.modules
    names = [n.strip() for n in modules.split(",") if n.strip()]
    rows = measure_modules(
        names,
        channels=args.channels,
        height=args.height,
        width=args.width,
        batch_size=args.batch_size,
        repeats=args.repeats,
        device=args.device,
        clock=args.clock,
    )
    meta = {
        **environment(),
        "channels": args.channels,
        "height": args.height,
        "width": args.width,
    }
    write_json(args.out, {"rows": rows, "metadata": meta})
    return 0
