"""k-means initialisation: descriptor sampling, faiss clustering, the centroids file and CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from icsa.centroids import centroid_source
from icsa.cli import main
from icsa.data import ImageDataset, load_split
from icsa.errors import InputError
from icsa.models import build_backbone, build_model
from icsa.registry import ATTENTIONS
from icsa.spec import ModelSpec
from icsa.step_settings import KMeansSettings
from icsa.train.kmeans import (
    compute_centroids,
    load_centroids,
    run_kmeans,
    sample_local_descriptors,
)
from tests.helpers.city import make_street_city

torch.set_num_threads(1)
SIZE = (32, 32)  # VGG16 → 512×2×2 local features


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return make_street_city(
        tmp_path_factory.mktemp("city"),
        size=SIZE,
        train_len=100.0,
        val_len=60.0,
        train_q=8,
        val_q=8,
    )


def test_descriptors_are_unit_local_features(city):
    split = load_split(city, "pitts30k", "train")
    ds = ImageDataset(split.db_paths, SIZE)
    net = build_backbone("vgg16", "none", "none", init_seed=0)
    desc = sample_local_descriptors(
        net, ds, max_images=5, per_image=3, rng=np.random.default_rng(0)
    )
    assert desc.shape == (5 * 3, 512)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, rtol=1e-5)
    # each row is one location of some image's normalised feature map (brute force)
    with torch.no_grad():
        maps = (
            torch.nn.functional.normalize(
                net(torch.stack([ds[i][0] for i in range(len(ds))])), dim=1
            )
            .flatten(2)
            .transpose(1, 2)
            .reshape(-1, 512)
        )
    sq = ((torch.from_numpy(desc)[:, None, :] - maps[None]) ** 2).sum(-1)
    assert float(sq.min(dim=1).values.max()) < 1e-8
    # fewer locations than asked (2×2 = 4 < 100): every location once
    all_locs = sample_local_descriptors(net, ds, 2, 100, np.random.default_rng(0))
    assert all_locs.shape == (2 * 4, 512)


def test_kmeans_returns_converged_seeded_centroids():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8)).astype(np.float32) * 10
    data = (centers[rng.integers(0, 4, 400)] + rng.normal(size=(400, 8)) * 0.1).astype(np.float32)
    found = run_kmeans(data, 4, iterations=20, seed=0)
    assert found.shape == (4, 8)
    # Lloyd's fixed point: every centroid is the mean of the points assigned to it
    owner = np.argmin(((data[:, None] - found[None]) ** 2).sum(-1), axis=1)
    for k in np.unique(owner):
        np.testing.assert_allclose(found[k], data[owner == k].mean(axis=0), atol=1e-3)
    np.testing.assert_array_equal(found, run_kmeans(data, 4, iterations=20, seed=0))
    with pytest.raises(InputError, match="3 descriptors for num_clusters=4"):
        run_kmeans(data[:3], 4, 10, 0)


def test_centroids_file_initialises_netvlad(city, tmp_path):
    out = tmp_path / "c.npz"
    rc = main(
        [
            "kmeans",
            "--root",
            str(city),
            "--dataset",
            "pitts30k",
            "--model-spec",
            json.dumps(
                {
                    "backbone": "vgg16",
                    "attention": "none",
                    "num_clusters": 4,
                    "image_size": list(SIZE),
                }
            ),
            "--max-images",
            "10",
            "--iterations",
            "10",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    data = np.load(out)
    assert data["centroids"].shape == (4, 512) and data["descriptors"].shape == (40, 512)
    assert str(data["backbone"]) == "vgg16"
    model = build_model("vgg16", "icsa", 4, SIZE, "5", "none", init_seed=0)
    cents, descs = load_centroids(out, 4, model.feature_shape[0], "vgg16")
    alpha = model.netvlad.init_from_centroids(cents, descs)
    assert alpha > 0
    # kmeans uses the untrained backbone of the same init seed as the model it initialises
    ref = build_backbone("vgg16", "none", "none", init_seed=0).state_dict()
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, ref[key]), key


def test_bad_centroids_are_clear_errors(city, tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_centroids(tmp_path / "missing.npz", 4, 512)
    out = tmp_path / "c.npz"
    sample = KMeansSettings(max_images=4, iterations=5)
    compute_centroids(ModelSpec("vgg16", "none", 4, SIZE), city, "pitts30k", "train", out, sample)
    with pytest.raises(InputError, match=r"shape \(4, 512\), expected \(8, 512\)"):
        load_centroids(out, 8, 512)
    with pytest.raises(InputError, match=r"expected \(4, 256\)"):
        load_centroids(out, 4, 256)
    with pytest.raises(InputError, match="made for backbone vgg16, expected resnet18"):
        load_centroids(out, 4, 512, "resnet18")
    # Issue 16: other weights, random init or image size describe other features.
    made = {"weights": "none", "init_seed": 0, "image_size": list(SIZE)}
    load_centroids(out, 4, 512, "vgg16", made_with=made)  # the same: accepted
    for key, other in (("weights", "imagenet"), ("init_seed", 3), ("image_size", [8, 8])):
        with pytest.raises(
            InputError, match=rf"made with {key}=.*expected {re.escape(repr(other))}; rerun"
        ):
            load_centroids(out, 4, 512, "vgg16", made_with={**made, key: other})
    # A ModelSpec too small for its backbone cannot reach k-means (the first conv would fail).
    with pytest.raises(InputError, match=r"image_size=\[8, 8\]: expected at least 16×16 for vgg16"):
        ModelSpec("vgg16", "none", 4, (8, 8))
    with pytest.raises(InputError, match="16 descriptors for num_clusters=64"):
        many = ModelSpec("vgg16", "none", 64, SIZE)
        compute_centroids(many, city, "pitts30k", "train", tmp_path / "d.npz", sample)
    assert not (tmp_path / "d.npz").exists()


@pytest.mark.parametrize("attention", sorted(ATTENTIONS))
def test_identity_at_init_set_matches_every_module(attention):
    """A registry entry's identity_at_init must hold exactly for the modules whose untrained
    output equals their input (up to a positive per-location scale, which NetVLAD's L2 removes)."""
    model = build_model("vgg16", attention, 4, SIZE, "none", "none", 0)
    x = torch.randn(3, *model.feature_shape)
    with torch.no_grad():
        y = model.attention(x)
    same = torch.allclose(F.normalize(y, dim=1), F.normalize(x, dim=1), atol=1e-6)
    assert same == ATTENTIONS[attention].identity_at_init
    assert centroid_source(attention) == ("backbone" if same else attention)


def test_se_centroids_are_sampled_through_the_untrained_module(city, tmp_path):
    common = dict(root=city, dataset="pitts30k", split="train",
                  settings=KMeansSettings(max_images=6, iterations=5))  # fmt: skip
    models = {a: ModelSpec("vgg16", a, 4, SIZE) for a in ("none", "icsa", "se")}
    plain = compute_centroids(models["none"], out=tmp_path / "b.npz", **common)
    icsa = compute_centroids(models["icsa"], out=tmp_path / "i.npz", **common)
    se = compute_centroids(models["se"], out=tmp_path / "s.npz", **common)
    assert (plain["source"], icsa["source"], se["source"]) == ("backbone", "backbone", "se")
    assert (tmp_path / "b.npz").read_bytes() == (tmp_path / "i.npz").read_bytes()
    # The sample equals an independent pass through the SE model's backbone + untrained module.
    model = build_model("vgg16", "se", 4, SIZE, "none", "none", 0).eval()
    split = load_split(city, "pitts30k", "train")
    ref = sample_local_descriptors(
        torch.nn.Sequential(model.backbone, model.attention), ImageDataset(split.db_paths, SIZE),
        6, 100, np.random.default_rng(0),
    )  # fmt: skip
    got = np.load(tmp_path / "s.npz")["descriptors"]
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert not np.allclose(got, np.load(tmp_path / "b.npz")["descriptors"], atol=1e-3)
    load_centroids(tmp_path / "s.npz", 4, 512, "vgg16", "se")
    with pytest.raises(InputError, match="sampled through backbone, expected se"):
        load_centroids(tmp_path / "b.npz", 4, 512, "vgg16", "se")
    with pytest.raises(InputError, match="sampled through se, expected backbone"):
        load_centroids(tmp_path / "s.npz", 4, 512, "vgg16", "icsa")
