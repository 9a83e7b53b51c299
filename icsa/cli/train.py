"""`icsa train`: weakly supervised triplet training of one model (resumes from its run folder).

icsa train --root DIR --dataset pitts30k --backbone vgg16 --attention icsa
    --lowest-trained-block 5 --seed 0 --weights none --image-size H W --num-clusters K
    --centroids C.npz --settings JSON-or-@file --run-dir results/runs/RUN
    --device auto --threads N
"""

from __future__ import annotations

import argparse
import json
import logging


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one model with triplet loss (resumable)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--root", required=True, help="dataset root (NetVLAD layout)")
    p.add_argument("--dataset", required=True, help="pitts30k, pitts250k, tokyotm, ...")
    p.add_argument("--backbone", required=True)
    p.add_argument("--attention", required=True)
    p.add_argument("--lowest-trained-block", default="none", help="none or 1..5")
    p.add_argument("--seed", type=int, default=0, help="mining order (and default init seed)")
    p.add_argument(
        "--init-seed",
        type=int,
        default=None,
        help="seed of the random init (default: --seed); must match `icsa kmeans`",
    )
    p.add_argument("--weights", default="none", help="none, imagenet or a state-dict path")
    p.add_argument("--image-size", type=int, nargs=2, required=True, metavar=("H", "W"))
    p.add_argument("--num-clusters", type=int, required=True)
    p.add_argument("--centroids", required=True, help="output of `icsa kmeans`")
    p.add_argument(
        "--settings",
        default="{}",
        help="TrainSettings as a JSON object, or @file.json (unset keys: defaults)",
    )
    p.add_argument("--run-dir", required=True, help="run folder (checkpoints, history, dvclive)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-dvclive", action="store_true", help="skip dvclive logging")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from icsa.train.run import train_run  # deferred: keeps `icsa --help` fast
    from icsa.train.settings import TrainSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = TrainSettings.from_json(args.settings)
    summary = train_run(
        root=args.root,
        dataset=args.dataset,
        backbone=args.backbone,
        attention=args.attention,
        lowest_trained_block=args.lowest_trained_block,
        seed=args.seed,
        weights=args.weights,
        image_size=tuple(args.image_size),
        num_clusters=args.num_clusters,
        centroids=args.centroids,
        settings=settings,
        run_dir=args.run_dir,
        device=args.device,
        threads=args.threads,
        init_seed=args.init_seed,
        enable_dvclive=not args.no_dvclive,
    )
    print(json.dumps(summary, default=str))
    return 0
