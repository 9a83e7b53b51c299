"""`icsa analysis <figure>`: the paper's figures (Figs. 4–10) and training curves.

    icsa analysis local-stats --checkpoint CK --dataset-root R --dataset D --split S --out X.npz
    icsa analysis svd --stats A.npz B.npz ... --out-png P --out-csv C --out-json J      (Fig. 5)
    icsa analysis tsne --stats A.npz ... --out-png P1 P2 ... --out-npz N           (Figs. 6–8)
    icsa analysis attention --checkpoint CK --out-channel-png P --out-channel-csv C \
        --out-spatial-png P --out-spatial-csv C --out-json J                     (Figs. 9–10)
    icsa analysis retrieval --perquery X.npz --dataset-root R --dataset D --split S \
        --out-png P --out-csv C                                                         (Fig. 4)
    icsa analysis curves --history H1.csv H2.csv ... --out-png P --out-csv C

``local-stats`` makes one pass over a split's images per model; ``svd`` and ``tsne`` combine
several such files, so a model's images are read once for both figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icsa.cli.dataset_flags import add_dataset_flags
from icsa.io import write_json
from icsa.step_settings import POSITIVE_RADIUS_M  # evaluate.threshold's default
from icsa.utils import seed_everything, set_threads  # light: torch loads inside them


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")


def _data_label(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-label", default=None, help="the data drawn, as a footnote of the figure")


def register(subparsers: argparse._SubParsersAction) -> None:
    top = subparsers.add_parser("analysis", help="figures of the paper (Figs. 4-10), curves")
    sub = top.add_subparsers(dest="figure", required=True)

    p = sub.add_parser("local-stats", help="Gram matrix and sample of a model's local descriptors")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `icsa train`")
    p.add_argument("--dataset-root", required=True)
    add_dataset_flags(p)
    p.add_argument("--split", default="test")
    p.add_argument("--images", choices=["db", "q", "all"], default="all")
    p.add_argument("--max-images", type=int, default=500, help="evenly spaced subset (0 = all)")
    p.add_argument("--per-image", type=int, default=10, help="locations kept per image for t-SNE")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output .npz")
    _common(p)
    p.set_defaults(func=_local_stats)

    p = sub.add_parser("svd", help="Fig. 5: singular-value ratios per model")
    p.add_argument("--stats", nargs="+", required=True, help="local-stats .npz files")
    p.add_argument("--labels", nargs="+", default=None, help="legend labels (default: models)")
    p.add_argument("--max-rank", type=int, default=100, help="ratios plotted (default 100)")
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-json", required=True)
    _data_label(p)
    _common(p)
    p.set_defaults(func=_svd)

    p = sub.add_parser("tsne", help="Figs. 6-8: joint t-SNE, one panel per model")
    p.add_argument("--stats", nargs="+", required=True, help="local-stats .npz files")
    p.add_argument("--labels", nargs="+", default=None)
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--max-points", type=int, default=2000, help="points per model (default 2000)")
    p.add_argument("--out-png", nargs="+", required=True, help="one PNG per --stats file")
    p.add_argument("--out-npz", required=True, help="points[N,2] and labels[N]")
    _data_label(p)
    _common(p)
    p.set_defaults(func=_tsne)

    p = sub.add_parser("attention", help="Figs. 9-10: ICSA channel and spatial weight maps")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out-channel-png", required=True)
    p.add_argument("--out-channel-csv", required=True)
    p.add_argument("--out-spatial-png", required=True)
    p.add_argument("--out-spatial-csv", required=True)
    p.add_argument("--out-json", required=True, help="min/max/spread of both halves")
    _common(p)
    p.set_defaults(func=_attention)

    p = sub.add_parser("retrieval", help="Fig. 4: queries with their top-k, hits marked")
    p.add_argument("--perquery", required=True, help="per-query .npz of `icsa evaluate`")
    p.add_argument("--dataset-root", required=True)
    add_dataset_flags(p)
    p.add_argument("--split", default="test")
    p.add_argument("--num-queries", type=int, default=4)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--threshold", type=float, default=POSITIVE_RADIUS_M, help="hit radius, metres")
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-csv", required=True)
    _data_label(p)
    _common(p)
    p.set_defaults(func=_retrieval)

    p = sub.add_parser("curves", help="training loss and validation recall per epoch")
    p.add_argument("--history", nargs="+", required=True, help="runs' history.csv files")
    p.add_argument("--labels", nargs="+", default=None, help="default: the run folder names")
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-csv", required=True)
    _data_label(p)
    _common(p)
    p.set_defaults(func=_curves)


def _labels(given: list[str] | None, default: list[str], flag: str) -> list[str]:
    from icsa.errors import InputError

    if given is None:
        return default
    if len(given) != len(default):
        raise InputError(f"--labels: {len(given)} given; expected one per {flag} ({len(default)})")
    return list(given)


def _local_stats(args: argparse.Namespace) -> int:
    from icsa.analysis.local_descriptors import local_stats_for_checkpoint, model_label, save_stats

    set_threads(args.threads)
    seed_everything(args.seed)
    stats, config = local_stats_for_checkpoint(
        args.checkpoint,
        args.dataset_root,
        args.dataset,
        args.split,
        layout=args.layout,
        images=args.images,
        max_images=args.max_images or None,
        per_image=args.per_image,
        seed=args.seed,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
    )
    save_stats(stats, model_label(config), args.out)
    return 0


def _load_all(paths: list[str], labels: list[str] | None):
    from icsa.analysis.local_descriptors import load_stats

    loaded = [load_stats(p) for p in paths]
    names = _labels(labels, [label for _, label in loaded], "--stats file")
    return {name: stats for name, (stats, _) in zip(names, loaded)}


def _svd(args: argparse.Namespace) -> int:
    from icsa.analysis import svd

    set_threads(args.threads)

    stats = _load_all(args.stats, args.labels)
    sv = {k: svd.singular_values_from_gram(s.gram, s.count) for k, s in stats.items()}
    ratios = {k: svd.singular_value_ratios(v) for k, v in sv.items()}
    svd.plot_singular_value_ratios(ratios, args.out_png, max_rank=args.max_rank,
                                   data_label=args.data_label)  # fmt: skip
    extra = {k: {"num_images": s.num_images, "num_locations": s.count} for k, s in stats.items()}
    svd.write_svd_data(sv, args.out_csv, args.out_json, extra=extra)
    return 0


def _tsne(args: argparse.Namespace) -> int:
    from icsa.analysis import tsne
    from icsa.errors import InputError

    set_threads(args.threads)
    if len(args.out_png) != len(args.stats):
        raise InputError(
            f"--out-png: {len(args.out_png)} paths; expected one per --stats ({len(args.stats)})"
        )
    stats = _load_all(args.stats, args.labels)
    emb = tsne.joint_tsne(
        {k: s.sample for k, s in stats.items()},
        perplexity=args.perplexity,
        seed=args.seed,
        max_points_per_model=args.max_points or None,
    )
    for label, png in zip(emb, args.out_png):
        tsne.plot_tsne_panel(emb, label, png, data_label=args.data_label)
    tsne.save_embeddings(emb, args.out_npz)
    return 0


def _attention(args: argparse.Namespace) -> int:
    from icsa.analysis import attention_maps as am
    from icsa.train.checkpoint import load_checkpoint

    set_threads(args.threads)

    ck = load_checkpoint(args.checkpoint)
    wts = am.icsa_weights_from_state(ck["model_state"], source=str(args.checkpoint))
    grid = wts.channel.reshape(am.grid_shape(wts.channel.size))
    label = ck["model_config"].get("backbone", "").upper() + "+" + "ICSA"
    c, (h, w) = wts.channel.size, wts.spatial.shape
    am.plot_heatmap(
        grid,
        f"{label} channel weights ({c} as {grid.shape[0]}×{grid.shape[1]})",
        args.out_channel_png,
    )
    am.plot_heatmap(wts.spatial, f"{label} spatial weights ({h}×{w})", args.out_spatial_png)
    am.write_grid_csv(grid, args.out_channel_csv)
    am.write_grid_csv(wts.spatial, args.out_spatial_csv)
    write_json(
        args.out_json,
        {
            "checkpoint": str(args.checkpoint),
            "epoch": ck.get("epoch"),
            "channel": am.summary(wts.channel),
            "channel_grid": list(grid.shape),
            "spatial": am.summary(wts.spatial),
        },
    )
    return 0


def _retrieval(args: argparse.Namespace) -> int:
    from icsa.analysis import retrieval_examples as rx
    from icsa.arrays import read_npz
    from icsa.data import load_split

    set_threads(args.threads)
    place = load_split(args.dataset_root, args.dataset, args.split, args.layout)
    per = read_npz(args.perquery, ["indices", "first_hit_rank"], "--perquery")
    indices, first_hit = per["indices"], per["first_hit_rank"]
    chosen = rx.select_queries(first_hit, args.num_queries, seed=args.seed)
    ex = rx.build_examples(chosen, indices, place.db.db_utm, place.db.q_utm, args.k, args.threshold)
    rx.plot_examples(ex, place.q_paths, place.db_paths, args.out_png, data_label=args.data_label)
    rx.write_examples_csv(ex, place.q_paths, place.db_paths, args.out_csv)
    return 0


def _curves(args: argparse.Namespace) -> int:
    from icsa.analysis import curves

    set_threads(args.threads)

    labels = _labels(args.labels, [Path(h).parent.name for h in args.history], "--history")
    hist = {label: curves.read_history(h) for label, h in zip(labels, args.history)}
    curves.plot_training_curves(hist, args.out_png, data_label=args.data_label)
    curves.write_curves_csv(hist, args.out_csv)
    return 0
