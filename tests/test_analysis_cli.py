"""`icsa analysis …` end to end on a tiny hand-made dataset and real tiny checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from icsa.cli import main
from icsa.models import build_model
from icsa.train.checkpoint import save_checkpoint
from tests.helpers.datasets import make_noise_test_split

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def noise_split_and_checkpoints(tmp_path_factory):
    """pitts30k-test with 8 database images and 4 queries, and three VGG16 checkpoints."""
    root = tmp_path_factory.mktemp("noise-split")
    make_noise_test_split(root, num_db=8)
    ckpts = {}
    for att in ("none", "ia", "icsa"):
        model = build_model("vgg16", att, num_clusters=4, image_size=(64, 64))
        if att == "icsa":
            with torch.no_grad():
                model.attention.channel_weight.copy_(torch.linspace(0.9, 1.1, 512).view(512, 1, 1))
                model.attention.spatial_weight.fill_(0.992)
        ckpts[att] = root / f"{att}.pt"
        save_checkpoint(
            ckpts[att],
            {"model_state": model.state_dict(), "model_config": model.config, "epoch": 3},
        )
    return root, ckpts


def test_analysis_cli_figures(noise_split_and_checkpoints, tmp_path):
    root, ckpts = noise_split_and_checkpoints
    stats = []
    for att, ck in ckpts.items():
        out = tmp_path / f"stats-{att}.npz"
        assert (
            main(
                [
                    "analysis",
                    "local-stats",
                    "--checkpoint",
                    str(ck),
                    "--dataset-root",
                    str(root),
                    "--dataset",
                    "pitts30k",
                    "--split",
                    "test",
                    "--max-images",
                    "10",
                    "--per-image",
                    "6",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        stats.append(str(out))
    z = np.load(stats[2])
    assert str(z["label"]) == "VGG16+ICSA" and int(z["num_images"]) == 10
    assert int(z["count"]) == 10 * 4 * 4 and z["sample"].shape == (60, 512)

    f5 = tmp_path / "fig5.png"
    assert (
        main(
            [
                "analysis",
                "svd",
                "--stats",
                *stats,
                "--out-png",
                str(f5),
                "--out-csv",
                str(tmp_path / "fig5.csv"),
                "--out-json",
                str(tmp_path / "fig5.json"),
            ]
        )
        == 0
    )
    assert f5.stat().st_size > 1000
    svd = pd.read_csv(tmp_path / "fig5.csv")
    for _, g in svd.groupby("model"):
        assert (np.diff(g["singular_value"]) <= 0).all() and (g["singular_value"] >= 0).all()
        assert g["ratio"].iloc[0] == 1.0 and (g["ratio"] <= 1.0).all()
    counts = json.loads((tmp_path / "fig5.json").read_text())
    assert set(counts) == {"VGG16", "VGG16+IA", "VGG16+ICSA"}
    assert counts["VGG16"]["num_locations"] == 160

    pngs = [str(tmp_path / f"fig{i}.png") for i in (6, 7, 8)]
    assert (
        main(
            [
                "analysis",
                "tsne",
                "--stats",
                *stats,
                "--out-png",
                *pngs,
                "--out-npz",
                str(tmp_path / "tsne.npz"),
                "--perplexity",
                "10",
            ]
        )
        == 0
    )
    t = np.load(tmp_path / "tsne.npz")
    assert t["points"].shape == (180, 2) and np.isfinite(t["points"]).all()

    out = {k: str(tmp_path / k) for k in ("c.png", "c.csv", "s.png", "s.csv", "a.json")}
    assert (
        main(
            [
                "analysis",
                "attention",
                "--checkpoint",
                str(ckpts["icsa"]),
                "--out-channel-png",
                out["c.png"],
                "--out-channel-csv",
                out["c.csv"],
                "--out-spatial-png",
                out["s.png"],
                "--out-spatial-csv",
                out["s.csv"],
                "--out-json",
                out["a.json"],
            ]
        )
        == 0
    )
    assert np.loadtxt(out["c.csv"], delimiter=",").shape == (16, 32)
    assert np.loadtxt(out["s.csv"], delimiter=",").shape == (4, 4)
    summ = json.loads((tmp_path / "a.json").read_text())
    assert summ["spatial"]["spread"] == 0.0 and abs(summ["channel"]["spread"] - 0.2) < 1e-6
    # A module without an ICSA pair is refused with exit status 2.
    assert (
        main(
            [
                "analysis",
                "attention",
                "--checkpoint",
                str(ckpts["ia"]),
                "--out-channel-png",
                out["c.png"],
                "--out-channel-csv",
                out["c.csv"],
                "--out-spatial-png",
                out["s.png"],
                "--out-spatial-csv",
                out["s.csv"],
                "--out-json",
                out["a.json"],
            ]
        )
        == 2
    )


def test_analysis_cli_retrieval_curves(noise_split_and_checkpoints, tmp_path):
    root, _ = noise_split_and_checkpoints
    # a per-query file as `icsa evaluate` writes it: exact top-k by UTM distance + 10 m jitter
    db_utm = np.stack([np.arange(8) * 20.0, np.zeros(8)], axis=1)
    q_utm = np.array([[0.0, 3.0], [40.0, 0.0], [95.0, 0.0], [500.0, 0.0]])
    idx = np.argsort(np.linalg.norm(q_utm[:, None] - db_utm[None], axis=2), axis=1)[:, :6]
    hit = np.linalg.norm(db_utm[idx] - q_utm[:, None], axis=2) <= 25
    rank = np.where(hit.any(1), hit.argmax(1), -1)
    np.savez(tmp_path / "pq.npz", indices=idx, distances=np.zeros(idx.shape), first_hit_rank=rank)
    assert (
        main(
            [
                "analysis",
                "retrieval",
                "--perquery",
                str(tmp_path / "pq.npz"),
                "--dataset-root",
                str(root),
                "--dataset",
                "pitts30k",
                "--num-queries",
                "4",
                "--out-png",
                str(tmp_path / "f4.png"),
                "--out-csv",
                str(tmp_path / "f4.csv"),
            ]
        )
        == 0
    )
    shown = pd.read_csv(tmp_path / "f4.csv")
    assert len(shown) == 20 and (tmp_path / "f4.png").stat().st_size > 1000
    expect = np.linalg.norm(db_utm[shown["db"]] - q_utm[shown["query"]], axis=1) <= 25
    assert (shown["hit"].to_numpy() == expect).all()
    assert not shown[shown["query"] == 3]["hit"].any()
    np.savez(tmp_path / "bad.npz", indices=idx)  # no first_hit_rank
    bad = ["analysis", "retrieval", "--perquery", str(tmp_path / "bad.npz"), "--dataset-root"]
    bad += [str(root), "--dataset", "pitts30k", "--out-png", "x.png", "--out-csv", "x.csv"]
    assert main(bad) == 2

    run = tmp_path / "runs" / "pitts30k-vgg16-icsa-b5-s0"
    run.mkdir(parents=True)
    (run / "history.csv").write_text(
        "epoch,lr,loss,recall@1,recall@5\n0,,,0.1,0.3\n1,0.0001,0.2,0.2,0.4\n2,0.0001,0.1,0.3,0.5\n"
    )
    assert (
        main(
            [
                "analysis",
                "curves",
                "--history",
                str(run / "history.csv"),
                "--out-png",
                str(tmp_path / "c.png"),
                "--out-csv",
                str(tmp_path / "c.csv"),
            ]
        )
        == 0
    )
    long = pd.read_csv(tmp_path / "c.csv")
    assert set(long["run"]) == {run.name} and len(long) == 2 + 3 + 3
