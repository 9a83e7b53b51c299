"""Analysis figures (Figs. 4–10, training curves) on tiny synthetic inputs and tiny models."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from icsa.analysis import attention_maps, curves, retrieval_examples, svd, tsne
from icsa.analysis.local_descriptors import gather_local_stats, to_rows
from icsa.errors import InputError

torch.set_num_threads(1)


def _png_ok(path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


# --- Fig. 5: SVD ---------------------------------------------------------------------------


def _matrix_with_spectrum(spectrum: np.ndarray, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(rows, spectrum.size)))
    v, _ = np.linalg.qr(rng.normal(size=(spectrum.size, spectrum.size)))
    return (u * spectrum) @ v.T


def test_singular_values_from_gram_match_numpy_svd_and_counts(tmp_path):
    spectrum = np.array([10.0, 4.0, 1.5, 0.5, 0.09, 0.05, 0.02, 0.005])  # ratios .4 .15 ... .0005
    x = _matrix_with_spectrum(spectrum, rows=300)
    sv = svd.singular_values_from_gram(x.T @ x, count=x.shape[0])
    np.testing.assert_allclose(sv, np.linalg.svd(x, compute_uv=False), rtol=1e-6)
    np.testing.assert_allclose(sv, spectrum, rtol=1e-6)
    assert np.all(np.diff(sv) <= 0) and np.all(sv > 0)
    ratios = svd.singular_value_ratios(sv)
    assert ratios[0] == 1.0 and np.all(ratios <= 1.0)
    # ratios: 1, .4, .15, .05, .009, .005, .002, .0005 -> 3 above 0.1, 4 above 0.01
    assert svd.count_above(ratios) == {"0.1": 3, "0.01": 4}

    other = svd.singular_values_from_gram(np.eye(8) * 4.0, count=100)
    png, csv_path, js = tmp_path / "f5.png", tmp_path / "f5.csv", tmp_path / "f5.json"
    svd.plot_singular_value_ratios({"a": ratios, "b": svd.singular_value_ratios(other)}, png)
    svd.write_svd_data({"a": sv, "b": other}, csv_path, js, extra={"a": {"num_images": 3}})
    _png_ok(png)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 16 and {r["model"] for r in rows} == {"a", "b"}
    summary = json.loads(js.read_text())
    assert summary["a"]["above"] == {"0.1": 3, "0.01": 4} and summary["a"]["num_images"] == 3
    assert summary["b"]["above"] == {"0.1": 8, "0.01": 8}


def test_singular_values_rank_limited_by_row_count():
    x = np.random.default_rng(1).normal(size=(5, 12))
    sv = svd.singular_values_from_gram(x.T @ x, count=5)
    assert sv.shape == (5,)
    np.testing.assert_allclose(sv, np.linalg.svd(x, compute_uv=False), rtol=1e-8)


# --- local descriptors (what enters NetVLAD) ------------------------------------------------


class _Conv(torch.nn.Module):
    """A real conv layer standing in for a PlaceModel's local_features (tested again below)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_gather_local_stats_gram_and_sample_are_exact():
    model = _Conv()
    images = torch.randn(5, 3, 8, 10)
    batches = [images[:2], images[2:]]
    stats = gather_local_stats(model, batches, per_image=3, seed=0)
    with torch.no_grad():
        feats = model.local_features(images)  # [5, 6, 4, 5]
    rows = to_rows(feats).double().numpy()
    # to_rows puts location (h, w) of image b at row b*h*w + h*w_count + w.
    assert np.allclose(rows[1 * 20 + 2 * 5 + 3], feats[1, :, 2, 3].double().numpy())
    assert stats.count == 100 and stats.num_images == 5
    np.testing.assert_allclose(stats.gram, rows.T @ rows, rtol=1e-10, atol=1e-10)
    assert stats.sample.shape == (15, 6)
    # every sampled row is a location of its own image
    for i in range(5):
        block = rows[i * 20 : (i + 1) * 20]
        for r in stats.sample[i * 3 : (i + 1) * 3]:
            assert np.min(np.abs(block - r).max(axis=1)) < 1e-5
    again = gather_local_stats(model, batches, per_image=3, seed=0)
    np.testing.assert_array_equal(again.sample, stats.sample)
    with pytest.raises(InputError):
        gather_local_stats(model, [], per_image=3)


# --- Figs. 6–8: t-SNE -------------------------------------------------------------------------


def test_joint_tsne_finite_right_counts_and_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    samples = {
        m: rng.normal(loc=i, size=(n, 8))
        for i, (m, n) in enumerate([("none", 30), ("ia", 25), ("icsa", 40)])
    }
    emb = tsne.joint_tsne(samples, perplexity=30, seed=0, max_points_per_model=35)
    assert {k: v.shape for k, v in emb.items()} == {"none": (30, 2), "ia": (25, 2), "icsa": (35, 2)}
    assert all(np.isfinite(v).all() for v in emb.values())
    again = tsne.joint_tsne(samples, perplexity=30, seed=0, max_points_per_model=35)
    for k in emb:
        np.testing.assert_allclose(again[k], emb[k])
    for label in emb:
        tsne.plot_tsne_panel(emb, label, tmp_path / f"{label}.png")
        _png_ok(tmp_path / f"{label}.png")
    tsne.save_embeddings(emb, tmp_path / "t.npz")
    z = np.load(tmp_path / "t.npz")
    assert z["points"].shape == (90, 2) and list(z["labels"]).count("ia") == 25
    with pytest.raises(InputError):
        tsne.joint_tsne({"a": np.zeros((5, 3)), "b": np.zeros((5, 4))})


# --- Figs. 9–10: attention heat maps ---------------------------------------------------------


def test_grid_shape_near_square():
    assert attention_maps.grid_shape(512) == (16, 32)
    assert attention_maps.grid_shape(64) == (8, 8)
    assert attention_maps.grid_shape(12) == (3, 4)
    assert attention_maps.grid_shape(7) == (1, 7)


@pytest.mark.parametrize("named", [True, False])
def test_icsa_weights_from_state_and_heatmaps(tmp_path, named):
    c, h, w = 24, 3, 5
    ch = torch.linspace(0.9, 1.1, c).reshape(c, 1, 1)
    sp = torch.full((1, h, w), 0.992)
    keys = ("channel_weight", "spatial_weight") if named else ("a", "b")
    state = {
        "backbone.x": torch.ones(4, 3, 3, 3),
        f"attention.{keys[0]}": ch,
        f"attention.{keys[1]}": sp,
        "netvlad.centroids": torch.ones(4, c),
    }
    wts = attention_maps.icsa_weights_from_state(state)
    assert wts.channel.shape == (c,) and wts.spatial.shape == (h, w)
    np.testing.assert_allclose(wts.channel, ch.reshape(-1).numpy())
    grid = wts.channel.reshape(attention_maps.grid_shape(c))
    assert grid.shape == (4, 6)
    s = attention_maps.summary(wts.spatial)
    assert s["spread"] == 0.0 and abs(s["min"] - 0.992) < 1e-6 and s["shape"] == [h, w]
    attention_maps.plot_heatmap(grid, "channel", tmp_path / "c.png")
    attention_maps.plot_heatmap(wts.spatial, "spatial", tmp_path / "s.png")  # constant map
    attention_maps.write_grid_csv(grid, tmp_path / "c.csv")
    _png_ok(tmp_path / "c.png")
    _png_ok(tmp_path / "s.png")
    back = np.loadtxt(tmp_path / "c.csv", delimiter=",")
    np.testing.assert_allclose(back, grid, rtol=1e-7)
    ckpt = tmp_path / "ck.pt"
    torch.save({"model_state": state, "epoch": 1}, ckpt)
    np.testing.assert_allclose(attention_maps.load_icsa_weights(ckpt).spatial, wts.spatial)


def test_icsa_weights_reject_other_modules():
    state = {"attention.weight": torch.ones(8, 3, 5)}  # IA: a full C×H×W tensor
    with pytest.raises(InputError, match="attention"):
        attention_maps.icsa_weights_from_state(state)


# --- Fig. 4: retrieval examples --------------------------------------------------------------


def test_retrieval_examples_hits_and_selection(tmp_path):
    rng = np.random.default_rng(0)
    db_utm = np.stack([np.arange(20) * 10.0, np.zeros(20)], axis=1)  # db i at x = 10 i
    q_utm = np.array([[0.0, 5.0], [100.0, 0.0], [190.0, 30.0], [55.0, 0.0]])
    indices = np.array(
        [[0, 1, 5, 3, 2, 9], [4, 10, 11, 9, 0, 1], [19, 0, 1, 2, 3, 4], [5, 6, 4, 7, 3, 2]]
    )
    first_hit = np.array([0, 1, -1, 0])
    chosen = retrieval_examples.select_queries(first_hit, 4, seed=0)
    assert sorted(chosen) == [0, 1, 2, 3]
    two = retrieval_examples.select_queries(first_hit, 2, seed=3)
    assert sum(first_hit[two] == 0) == 1  # one success, one failure
    ex = retrieval_examples.build_examples([0, 1, 2], indices, db_utm, q_utm, k=5)
    # brute force: hit iff Euclidean UTM distance <= 25 m
    for e in ex:
        for db, d, hit in zip(e.db, e.dist_m, e.hit):
            ref = np.hypot(*(db_utm[db] - q_utm[e.query]))
            assert abs(d - ref) < 1e-9 and hit == (ref <= 25.0)
    assert ex[0].hit == [True, True, False, False, True]
    assert ex[2].hit == [False] * 5  # db 19 at 190 m is 30 m from the query
    paths = []
    for i in range(20):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    retrieval_examples.plot_examples(ex, paths[:4], paths, tmp_path / "f4.png")
    retrieval_examples.write_examples_csv(ex, paths[:4], paths, tmp_path / "f4.csv")
    _png_ok(tmp_path / "f4.png")
    rows = list(csv.DictReader((tmp_path / "f4.csv").open()))
    assert len(rows) == 15 and rows[0]["hit"] == "True" and rows[2]["hit"] == "False"
    with pytest.raises(InputError):
        retrieval_examples.build_examples([0], indices[:, :3], db_utm, q_utm, k=5)


# --- training curves -------------------------------------------------------------------------


def test_training_curves(tmp_path):
    for run, base in (("r1", 0.5), ("r2", 0.3)):
        pd.DataFrame(
            {
                "epoch": [0, 1, 2, 3],
                "loss": [None, base, base / 2, base / 3],
                "lr": [1e-4] * 4,
                "val_recall@1": [0.1, 0.2, 0.3, 0.4],
                "val_recall@5": [0.4, 0.5, 0.6, 0.7],
            }
        ).to_csv(tmp_path / f"{run}.csv", index=False)
    hist = {r: curves.read_history(tmp_path / f"{r}.csv") for r in ("r1", "r2")}
    assert curves.metric_columns(hist["r1"]) == (["loss"], ["val_recall@1", "val_recall@5"])
    assert curves.primary_recall(["val_recall@1", "val_recall@5", "val_recall@15"]) == (
        "val_recall@5"
    )
    curves.plot_training_curves(hist, tmp_path / "c.png")
    curves.write_curves_csv(hist, tmp_path / "c.csv")
    _png_ok(tmp_path / "c.png")
    long = pd.read_csv(tmp_path / "c.csv")
    assert len(long) == 2 * (3 + 4 + 4) and set(long["metric"]) == {
        "loss",
        "val_recall@1",
        "val_recall@5",
    }
    (tmp_path / "bad.csv").write_text("step,loss\n1,0.3\n")
    with pytest.raises(InputError, match="epoch"):
        curves.read_history(tmp_path / "bad.csv")


# --- the inert spatial half (README; the paper's Fig. 10) ---------------------------------


def test_icsa_spatial_weights_stay_equal_under_weight_decay_training():
    """A few SGD steps (weight decay 1e-3, momentum) through a real tiny VGG16+ICSA+NetVLAD:
    NetVLAD normalises each location, so the spatial weights get no gradient and weight decay
    shrinks them all alike, while the channel weights learn and spread."""
    from icsa.models import build_model

    torch.manual_seed(0)
    model = build_model("vgg16", "icsa", num_clusters=4, image_size=(64, 64))
    images = torch.randn(6, 3, 64, 64)
    with torch.no_grad():
        prefix = model.frozen_prefix(images)  # the backbone is frozen (block "none")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1.0, momentum=0.9, weight_decay=1e-3)
    loss_fn = torch.nn.TripletMarginLoss(margin=0.1**0.5)
    max_sp_grad = 0.0
    for _ in range(5):
        d = model.forward_from_prefix(prefix)  # [6, K*C]
        loss = loss_fn(d[0:2], d[2:4], d[4:6])
        opt.zero_grad()
        loss.backward()
        max_sp_grad = max(max_sp_grad, model.attention.spatial_weight.grad.abs().max().item())
        opt.step()
    assert max_sp_grad < 1e-6
    wts = attention_maps.icsa_weights_from_state(model.state_dict())
    c, h, w = model.feature_shape
    assert wts.spatial.shape == (h, w) and wts.channel.shape == (c,)
    sp = attention_maps.summary(wts.spatial)
    assert sp["spread"] < 1e-6  # all equal ...
    assert 1.0 - sp["mean"] > 1e-3  # ... and shrunk below 1 by weight decay alone
    assert attention_maps.summary(wts.channel)["spread"] > 1e-4  # channels learned
    grid = wts.channel.reshape(attention_maps.grid_shape(c))
    assert grid.shape == (16, 32)


def test_gather_local_stats_on_place_model_matches_svd():
    from icsa.models import build_model

    model = build_model("vgg16", "icsa", num_clusters=4, image_size=(64, 64))
    images = torch.randn(3, 3, 64, 64)
    stats = gather_local_stats(model, [images[:2], images[2:]], per_image=5, seed=1)
    with torch.no_grad():
        x = to_rows(model.local_features(images)).double().numpy()  # [3*4*4, 512]
    assert stats.count == x.shape[0] == 48 and stats.sample.shape == (15, 512)
    sv = svd.singular_values_from_gram(stats.gram, stats.count)
    ref = np.linalg.svd(x, compute_uv=False)
    np.testing.assert_allclose(sv[:10], ref[:10], rtol=1e-6)
    assert sv.shape == (48,) and np.all(np.diff(sv) <= 0) and np.all(sv >= 0)


def test_figures_carry_the_name_of_their_data(tmp_path, monkeypatch):
    # save_figure writes the data label as a footnote: the figure object keeps the text.
    from icsa.analysis import plotting

    seen = []
    real = plotting.save_figure
    monkeypatch.setattr(
        svd, "save_figure", lambda fig, out, **kw: (seen.append(fig), real(fig, out, **kw))
    )
    ratios = {"VGG16": np.array([1.0, 0.5, 0.1])}
    svd.plot_singular_value_ratios(ratios, tmp_path / "a.png", data_label="synthetic X city, test")
    svd.plot_singular_value_ratios(ratios, tmp_path / "b.png")
    assert [t.get_text() for t in seen[0].texts] == ["data: synthetic X city, test"]
    assert (
        seen[1].texts == []
        and (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    )
