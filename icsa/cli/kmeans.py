"""`icsa kmeans`: NetVLAD centroids from local descriptors of the untrained backbone.

icsa kmeans --root DIR --dataset pitts30k --split train --model-spec MODELSPEC-JSON
    --max-images 500 --descriptors-per-image 100 --iterations 100 --seed 0 --threads N
    --out centroids.npz

The model is an icsa.spec.ModelSpec as JSON, the one the runs that start from these centroids
train (its lowest trained block does not matter: the untrained network is sampled); the
centroids file records its weights, init seed and image size, and `icsa train` checks them.
"""

from __future__ import annotations

import argparse
import json

from icsa.cli.dataset_flags import add_dataset_flags
from icsa.step_settings import KMeansSettings
from icsa.utils import resolve_device, set_threads

# The defaults of the workflow's `kmeans:` section (icsa.step_settings).
DEFAULTS = KMeansSettings()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "kmeans",
        help="k-means centroids for NetVLAD initialisation",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--root", required=True, help="dataset root")
    add_dataset_flags(p)
    p.add_argument("--split", default="train", help="split whose database images are sampled")
    p.add_argument(
        "--model-spec", required=True,
        help="ModelSpec JSON or @file (SE/CBAM attention: descriptors sampled through it)",
    )  # fmt: skip
    p.add_argument("--max-images", type=int, default=DEFAULTS.max_images)
    p.add_argument("--descriptors-per-image", type=int, default=DEFAULTS.descriptors_per_image)
    p.add_argument("--iterations", type=int, default=DEFAULTS.iterations)
    p.add_argument("--seed", type=int, default=0, help="image/location sampling and k-means seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="output .npz (centroids, descriptors)")
    p.set_defaults(func=_kmeans)


def _kmeans(args: argparse.Namespace) -> int:
    from icsa.spec import ModelSpec
    from icsa.train.kmeans import compute_centroids  # deferred: keeps `icsa --help` fast

    set_threads(args.threads)
    model = ModelSpec.from_flag(args.model_spec)
    settings = KMeansSettings(
        max_images=args.max_images,
        descriptors_per_image=args.descriptors_per_image,
        iterations=args.iterations,
    )
    summary = compute_centroids(
        model,
        root=args.root,
        dataset=args.dataset,
        split=args.split,
        out=args.out,
        settings=settings,
        layout=args.layout,
        seed=args.seed,
        threads=args.threads,
        device=resolve_device(args.device),
    )
    print(json.dumps(summary))
    return 0
