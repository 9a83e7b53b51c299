"""`icsa regression run|check`: the CI regression check (icsa/regression.py).

    icsa regression run --config config/regression.yaml --work DIR --out result.json
    icsa regression check --result result.json --baseline tests/baselines/regression.json
        [--tolerant]
    icsa regression baseline --reference native.json --others avx2.json default.json
        --command "how they were made" --out tests/baselines/regression.json

`run` trains and evaluates the regression configuration in one process and writes every
query's first-hit rank; `check` compares a result with the baseline — bit for bit where the
environment (torch, CPU capability) matches, else within the drift measured for the baseline —
and exits 1 naming what moved. `--tolerant` applies the cross-environment tolerance even where
the environment matches (what a foreign machine would see). `baseline` writes the baseline
from a reference result and the same config run under other kernels, with the measured drift
and the tolerance it implies (benchmarks/regression_baseline.sh makes them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("regression", help="the CI regression check",
                              description=__doc__.splitlines()[0])  # fmt: skip
    sub = p.add_subparsers(dest="regression_command", required=True)
    run = sub.add_parser("run", help="train and evaluate config/regression.yaml")
    run.add_argument("--config", type=Path, default=Path("config/regression.yaml"))
    run.add_argument("--work", type=Path, required=True, help="scratch folder (city, runs)")
    run.add_argument("--out", type=Path, required=True, help="result JSON")
    run.set_defaults(func=_run)
    check = sub.add_parser("check", help="compare a result with the baseline")
    check.add_argument("--result", type=Path, required=True)
    check.add_argument("--baseline", type=Path, default=Path("tests/baselines/regression.json"))
    check.add_argument(
        "--tolerant", action="store_true", help="the cross-environment tolerance everywhere"
    )
    check.set_defaults(func=_check)
    base = sub.add_parser("baseline", help="write the baseline with its measured tolerance")
    base.add_argument("--reference", type=Path, required=True, help="this machine's result")
    base.add_argument("--others", type=Path, nargs="*", default=[],
                      help="results of the same config under other kernels")  # fmt: skip
    base.add_argument("--command", required=True, help="how the results were made (recorded)")
    base.add_argument("--out", type=Path, required=True)
    base.set_defaults(func=_baseline)


def _run(args: argparse.Namespace) -> int:
    from icsa.io import write_json
    from icsa.regression import RegressionConfig, run_regression

    result = run_regression(RegressionConfig.load(args.config), args.work)
    write_json(args.out, result)
    print(f"{len(result['results'])} run/evaluation results → {args.out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from icsa.io import read_json
    from icsa.regression import compare

    result, baseline = read_json(args.result), read_json(args.baseline)
    problems = compare(result, baseline, True if args.tolerant else None)
    for problem in problems:
        print(f"icsa regression check: {problem}", file=sys.stderr)
    if not problems:
        exact = result["environment"] == baseline["environment"] and not args.tolerant
        print(f"regression check passed ({'bit for bit' if exact else 'within the drift'})")
    return 1 if problems else 0


def _baseline(args: argparse.Namespace) -> int:
    from icsa.io import read_json, write_json
    from icsa.regression import build_baseline

    baseline = build_baseline(read_json(args.reference), [read_json(p) for p in args.others],
                              args.command)  # fmt: skip
    write_json(args.out, baseline)
    for key, measured in baseline["tolerance"]["measured"].items():
        print(f"{key}: measured drift {measured} → allowed {baseline['tolerance']['allowed'][key]}")
    return 0
