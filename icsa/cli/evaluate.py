"""`icsa evaluate`: Recall@N of a split from its descriptor files; `icsa pca fit`: whitening.

icsa evaluate --root DIR --dataset D --split S --db X-db.npy --q X-q.npy [--pca P.npz]
              --model-id RUN [--ns 1 5 10 20] [--threshold 25] --out-metrics M.json
              [--out-perquery M.npz] [--memory-budget-mb MB] [--threads N]
              [--policy NAME] [--device auto|cpu|cuda]
              [--record X.json [--model-spec JSON|@FILE]]
icsa pca fit --db train-db.npy --dim 4096 --out pca.npz [--threads N]

``--record`` (written by ``icsa extract --out-record``) is checked against the evaluation set
and the descriptor files, and with ``--model-spec`` (the workflow passes the run's) against the
model: descriptors of another run are refused (icsa.evaluate.record). ``--policy NAME``
overrides the dataset's evaluation policy (its time-machine or panorama rule, a split's own
positive lists, Nordland's ``nordland1``/``nordland10`` frame tolerance; the names and which
dataset gets which are in icsa.evaluate.policy and docs/architecture.md). ``--layout msls``
reads MSLS-val (splits ``val``, ``val-<city>``; icsa/data/msls.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icsa.cli.dataset_flags import add_dataset_flags
from icsa.errors import InputError
from icsa.step_settings import EvaluateSettings

# torch and faiss load in the handlers, not for `--help` (icsa/lazy.py).
DEVICES = {"auto": None, "cpu": False, "cuda": True}
# The defaults of the workflow's `evaluate:` section (icsa.step_settings).
DEFAULTS = EvaluateSettings()


def _threads(n: int, use_gpu: bool | None) -> None:
    import faiss

    from icsa.utils import available_cpus, set_threads

    if use_gpu is not False:  # torch searches where faiss has no GPU index
        set_threads(n)
    # A CPU evaluation runs faiss and numpy only; not importing torch saves each workflow job
    # about 1.5 s (issue 30).
    faiss.omp_set_num_threads(max(1, min(n, available_cpus())))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="Recall@N of a split from descriptor files")
    p.add_argument("--root", required=True, type=Path, help="the dataset folder")
    add_dataset_flags(p)
    p.add_argument("--split", required=True)
    p.add_argument("--db", required=True, type=Path, help="database descriptors .npy")
    p.add_argument("--q", required=True, type=Path, help="query descriptors .npy")
    p.add_argument("--pca", type=Path, default=None, help="PCA whitening .npz (icsa pca fit)")
    p.add_argument("--model-id", required=True, help="run name written into the metrics")
    p.add_argument("--ns", type=int, nargs="+", default=DEFAULTS.ns,
                   help=f"Recall@N values (default {' '.join(map(str, DEFAULTS.ns))})")  # fmt: skip
    p.add_argument("--threshold", type=float, default=DEFAULTS.threshold,
                   help="positive radius in metres")  # fmt: skip
    p.add_argument("--out-metrics", required=True, type=Path)
    p.add_argument("--out-perquery", type=Path, default=None)
    p.add_argument("--memory-budget-mb", type=float, default=None, help="shard the database")
    # Names are checked in the handler (icsa.evaluate.policy lists them): choices= here would
    # import the evaluation package, and with it torch, for --help.
    p.add_argument(
        "--policy", default=None, metavar="NAME",
        help="evaluation policy by name (default: the dataset's; an unknown name lists them)",
    )  # fmt: skip
    p.add_argument("--device", choices=list(DEVICES), default="auto", help="faiss GPU or CPU")
    p.add_argument("--threads", type=int, default=1, help="torch and faiss threads")
    p.add_argument(
        "--record", type=Path, default=None,
        help="the descriptors' record (icsa extract --out-record), checked first",
    )  # fmt: skip
    p.add_argument("--model-spec", default=None, help="ModelSpec (JSON) the record's model must be")
    p.set_defaults(func=_evaluate)

    pca = subparsers.add_parser("pca", help="PCA whitening of descriptors")
    sub = pca.add_subparsers(dest="pca_command", required=True)
    fit = sub.add_parser("fit", help="fit PCA whitening on training-database descriptors")
    fit.add_argument("--db", required=True, type=Path, help="training-database descriptors .npy")
    fit.add_argument("--dim", type=int, default=4096)
    fit.add_argument("--out", required=True, type=Path)
    fit.add_argument("--threads", type=int, default=1)
    fit.set_defaults(func=_pca_fit)


def _evaluate(args: argparse.Namespace) -> int:
    from icsa.data.layouts import load_split
    from icsa.evaluate.metrics import evaluate_split, write_results
    from icsa.evaluate.policy import get_policy, policy_for

    if args.model_spec is not None and args.record is None:
        raise InputError("--model-spec: needs --record (the descriptors' record), none given")
    if args.record is not None:
        from icsa.evaluate.record import check_record
        from icsa.spec import ModelSpec

        expected = ModelSpec.from_flag(args.model_spec).to_dict() if args.model_spec else None
        check_record(args.record, {"db": args.db, "q": args.q}, args.dataset, args.split,
                     expected)  # fmt: skip
    if args.policy is not None:
        get_policy(args.policy)  # an unknown name fails before the split loads
    _threads(args.threads, DEVICES[args.device])
    split = load_split(args.root, args.dataset, args.split, args.layout)
    policy = policy_for(args.dataset, args.policy, split)
    metrics, perquery = evaluate_split(
        split,
        args.db,
        args.q,
        args.model_id,
        ns=args.ns,
        threshold=args.threshold,
        pca_path=args.pca,
        memory_budget_mb=args.memory_budget_mb,
        policy=policy,
        use_gpu=DEVICES[args.device],
    )
    write_results(metrics, perquery, args.out_metrics, args.out_perquery)
    recalls = "  ".join(f"R@{n} {100 * r:.2f}" for n, r in metrics["recalls"].items())
    print(f"{split!r} {args.model_id}: {recalls} → {args.out_metrics}")
    return 0


def _pca_fit(args: argparse.Namespace) -> int:
    from icsa.evaluate.metrics import load_descriptors
    from icsa.evaluate.pca import fit_pca

    _threads(args.threads, None)
    if not args.db.is_file():
        raise InputError(f"--db {args.db}: not found, expected training-database descriptors")
    descriptors = load_descriptors(args.db, None, "training-database")
    pca = fit_pca(descriptors, args.dim, source=str(args.db))
    pca.save(args.out)
    print(f"PCA {pca.input_dim} → {pca.dim}-D from {len(descriptors)} descriptors → {args.out}")
    return 0
