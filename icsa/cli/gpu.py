"""`icsa gpu run`: run a command pinned to one free GPU (file lock per device).

    icsa gpu run [--lock-dir DIR] [--devices N|0,1,2] [--poll S] [--timeout S] -- CMD ARGS...

Used as a prefix of the GPU rules' shell commands, so that ``snakemake --resources gpu=G`` on a
workstation with G GPUs never puts two jobs on one device. The exit status is CMD's.
"""

from __future__ import annotations

import argparse
import sys

from icsa.gpu import DEFAULT_LOCK_DIR, DEVICES_ENV, run_on_device


def register(subparsers: argparse._SubParsersAction) -> None:
    gpu = subparsers.add_parser("gpu", help="GPU allocation for parallel jobs on one machine")
    gpu_sub = gpu.add_subparsers(dest="gpu_command", required=True)
    run = gpu_sub.add_parser(
        "run",
        help="run CMD with CUDA_VISIBLE_DEVICES set to a free GPU, holding it until CMD ends",
        description=__doc__.splitlines()[0],
    )
    run.add_argument(
        "--lock-dir",
        default=DEFAULT_LOCK_DIR,
        help=f"folder of the per-device lock files gpu<id>.lock (default {DEFAULT_LOCK_DIR}); "
        "keep it on a local disk shared by all jobs of this machine",
    )
    run.add_argument(
        "--devices",
        default=None,
        help=f"a device count N (devices 0..N-1) or ids 0,1,2; default ${DEVICES_ENV}, "
        "else the GPUs that `nvidia-smi -L` lists",
    )
    run.add_argument("--poll", type=float, default=0.5, help="seconds between tries while busy")
    run.add_argument(
        "--timeout", type=float, default=None, help="give up after S seconds (default: wait)"
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...: the command to run")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    try:
        return run_on_device(
            cmd,
            devices=args.devices,
            lock_dir=args.lock_dir,
            poll=args.poll,
            timeout=args.timeout,
        )
    except TimeoutError as err:
        print(f"icsa gpu run: {err}", file=sys.stderr)
        return 1
