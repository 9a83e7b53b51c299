"""GSV-Cities: the layout read as gsv-cities reads it, the synthetic role written in it, its
places, UTM positions, and multisimilarity training on it validated on another dataset."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from snakemake.utils import update_config, validate

from icsa import pipeline
from icsa.data.gsv_cities import (
    COLUMNS,
    GsvImage,
    read_gsv_cities,
    utm_from_latlon,
    write_city,
)
from icsa.data.layouts import dataset_splits, load_split
from icsa.data.synthetic import CitySettings, generate
from icsa.errors import InputError
from icsa.spec import ModelSpec, RunSpec
from icsa.train.job import RunInputs, RunOptions, SplitSource
from icsa.train.places import places_from_labels
from icsa.train.run import train_run
from icsa.train.settings import TrainSettings
from icsa.train.state import CHECKPOINT_LAST, RUN_FINGERPRINT
from tests.helpers.workflow import ROOT, scratch_workdir, snakemake

SMALL = dict(image_height=32, image_width=32, train_db=20, train_q=10, val_db=24, val_q=12,
             test_db=20, test_q=10, tokyo_train_db=12, tokyo_train_q=6, tokyo_val_db=12,
             tokyo_val_q=6)  # fmt: skip
MS = {"epochs": 2, "regime": "multisimilarity", "ms_places_per_batch": 4,
      "ms_images_per_place": 4, "ms_warmup_steps": 1, "ms_lr": 1e-3, "eval_batch_size": 32,
      "ms_augment": "none"}  # fmt: skip
MODEL = {"backbone": "vgg16", "attention": "icsa", "aggregation": "gem", "image_size": (32, 32),
         "num_clusters": 4,
         "weights": "none", "init_seed": 0, "lowest_trained_block": "5"}  # fmt: skip


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    out = tmp_path_factory.mktemp("gsv") / "city"
    generate(out, 0, CitySettings(**SMALL, gsv_places=10, gsv_images_per_place=4),
             progress=False)  # fmt: skip
    return out


def _row(place, city="London", year=2018, month=7, northdeg=45, lat=51.5074, lon=-0.1278,
         panoid="abcDEF_-12"):  # fmt: skip
    return GsvImage(place, year, month, northdeg, city, lat, lon, panoid)


def test_image_names_are_spelled_as_gsv_cities_spells_them():
    # gsv-cities get_img_name: city_placeid(7)_year(4)_month(2)_northdeg(3)_lat_lon_panoid.jpg
    assert _row(13).name() == "London/London_0000013_2018_07_045_51.5074_-0.1278_abcDEF_-12.jpg"
    assert _row(7, month=11, northdeg=5, lat=-33.9).name().split("_")[1:5] == [
        "0000007", "2018", "11", "005"
    ]  # fmt: skip


def test_places_of_two_cities_with_the_same_id_are_two_places(tmp_path):
    rows = {"London": [_row(0, panoid=f"a{i}") for i in range(3)] + [_row(5, panoid="b")],
            "Boston": [_row(0, city="Boston", panoid=f"c{i}") for i in range(2)]}  # fmt: skip
    for name, city_rows in rows.items():
        write_city(tmp_path / "Dataframes" / f"{name}.csv", city_rows)
    got = read_gsv_cities(tmp_path)
    assert got.cities == ("Boston", "London")  # name order
    assert got.db.num_db == 6 and got.db.num_q == 0
    assert got.labels.tolist() == [0, 0, 1, 1, 1, 2]  # Boston 0; London 0; London 5
    assert got.db.db_images[0].startswith("Boston/Boston_0000000_")
    # Places of >= 3 images: London's place 0 only; the two others are dropped.
    places = places_from_labels(got.labels, 3)
    assert [p.tolist() for p in places.images] == [[2, 3, 4]] and places.dropped == 2


def test_places_from_labels_match_a_brute_force_grouping():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 30, 200)
    for k in (1, 4, 9):
        places = places_from_labels(labels, k)
        expected = [np.flatnonzero(labels == v) for v in np.unique(labels)]
        kept = [e for e in expected if len(e) >= k]
        assert [p.tolist() for p in places.images] == [e.tolist() for e in kept]
        assert places.dropped == len(expected) - len(kept) and places.num_db == 200


def test_utm_projection_meets_its_defining_properties():
    a, f, k0 = 6378137.0, 1 / 298.257223563, 0.9996
    e2 = f * (2 - f)
    # On a central meridian: easting 500 km, northing k0 × the meridian arc (numerical integral).
    for lat in (0.0, 12.5, 45.0, 71.0):
        phi = np.linspace(0, math.radians(lat), 20001)
        arc = np.trapezoid(a * (1 - e2) / (1 - e2 * np.sin(phi) ** 2) ** 1.5, phi)
        east, north = utm_from_latlon(np.array([lat]), np.array([9.0]))[0]  # zone 32's meridian
        assert abs(east - 500000.0) < 1e-6 and abs(north - k0 * arc) < 1e-3
    # Mirror symmetry about the central meridian; false northing south of the equator.
    (e1, n1), (e2_, n2) = utm_from_latlon(np.array([40.0, 40.0]), np.array([-79.0, -83.0]))
    assert abs((e1 - 500000) + (e2_ - 500000)) < 1e-6 and abs(n1 - n2) < 1e-6
    south = utm_from_latlon(np.array([-33.0]), np.array([-81.0]))[0]
    north = utm_from_latlon(np.array([33.0]), np.array([-81.0]))[0]
    assert abs(south[1] - (10_000_000 - north[1])) < 1e-6
    # Conformal: a 10 m step east and a 10 m step north both scale by the same local factor.
    lat, lon, d = 40.44, -79.99, 1e-4
    p0, pe, pn = utm_from_latlon(np.array([lat, lat, lat + d]), np.array([lon, lon + d, lon]))
    nu = a / math.sqrt(1 - e2 * math.sin(math.radians(lat)) ** 2)
    rho = a * (1 - e2) / (1 - e2 * math.sin(math.radians(lat)) ** 2) ** 1.5
    scale_e = np.linalg.norm(pe - p0) / (nu * math.cos(math.radians(lat)) * math.radians(d))
    scale_n = np.linalg.norm(pn - p0) / (rho * math.radians(d))
    assert abs(scale_e - scale_n) < 1e-5 and 0.9996 <= scale_e < 1.0001


def test_the_synthetic_role_round_trips_through_the_reader(city):
    root = city / "gsvcities"
    assert dataset_splits(root, "gsvcities", "gsvcities") == ["train"]
    split = load_split(root, "gsvcities", "train", "gsvcities")
    assert split.db.num_db == 40 and split.db.num_q == 0 and not split.q_paths
    assert np.bincount(split.place_labels).tolist() == [4] * 10  # 10 places of 4 images
    manifest = json.loads((city / "synthetic.json").read_text())
    assert manifest["splits"]["gsvcities-train"] == {"num_db": 40, "num_q": 0}
    for path, name, label in zip(split.db_paths, split.db.db_images, split.place_labels):
        with Image.open(path) as img:
            assert img.size == (32, 32)
        fields = name.split("/")[1].split("_")
        # Labels run through Eastbank's places 0-4, then Westbank's 0-4.
        assert fields[0] == name.split("/")[0] == ("Eastbank", "Westbank")[label // 5]
        assert int(fields[1]) == label % 5
    # The two cities both number their places from 0, and the images of a place stay close.
    with open(root / "Dataframes" / "Eastbank.csv") as f:
        assert f.readline().strip().split(",") == list(COLUMNS)
    spread = 2 * CitySettings().query_offset_max + 0.5  # a disc's diameter, lat/lon rounding
    for place in range(10):
        xy = split.db.db_utm[split.place_labels == place]
        assert np.ptp(xy, axis=0).max() < spread
    # The other roles are unchanged by the role's presence (their own Generators).
    plain = city.parent / "plain"
    generate(plain, 0, CitySettings(**SMALL), progress=False)
    for rel in ("pitts30k/datasets/pitts30k_train.mat", "tokyotm/datasets/tokyoTM_val.mat"):
        assert (plain / rel).read_bytes() == (city / rel).read_bytes()
    assert "gsv_places" not in (plain / "synthetic.json").read_text()


def test_bad_gsv_folders_are_named(tmp_path):
    with pytest.raises(InputError, match=r"Dataframes: no <city>\.csv"):
        read_gsv_cities(tmp_path)
    frames = tmp_path / "Dataframes"
    frames.mkdir()
    (frames / "Rome.csv").write_text("place_id,year,month\n1,2019,5\n")
    with pytest.raises(InputError, match=r"Rome\.csv: columns .*missing \['northdeg'"):
        read_gsv_cities(tmp_path)
    write_city(frames / "Rome.csv", [_row(1, city="Rome", month=13)])
    with pytest.raises(InputError, match=r"Rome\.csv, line 2: place_id 1, month 13"):
        read_gsv_cities(tmp_path)
    write_city(frames / "Rome.csv", [_row(1, city="Rome"), _row(1, city="Rome")])
    with pytest.raises(InputError, match="listed twice"):
        read_gsv_cities(tmp_path)
    (frames / "Rome.csv").write_text(",".join(COLUMNS) + "\nx,2019,5,10,Rome,1,2,p\n")
    with pytest.raises(InputError, match=r"line 2: place_id = 'x', expected an integer"):
        read_gsv_cities(tmp_path)
    with pytest.raises(InputError, match="has only 'train'.*set `validation`"):
        load_split(tmp_path, "gsvcities", "val", "gsvcities")


def _train(city, run_dir, settings=MS, validation="pitts30k-val"):
    spec = RunSpec("gsvcities", ModelSpec(**MODEL), TrainSettings(**settings), 0)
    source = SplitSource(city / "pitts30k", *validation.split("-", 1), "netvlad")
    inputs = RunInputs(city / "gsvcities", None, "gsvcities", source)
    return train_run(spec, inputs, run_dir, RunOptions(device="cpu", threads=1,
                                                       enable_dvclive=False))  # fmt: skip


def test_training_on_labelled_places_validates_elsewhere_and_resumes(city, tmp_path):
    summary = _train(city, tmp_path / "a")
    rows = json.loads((tmp_path / "a" / "history.json").read_text())
    assert summary["epochs"] == 2 and [r["places"] for r in rows[1:]] == [10, 10]
    assert [r["steps"] for r in rows[1:]] == [3, 3]  # 10 places in batches of 4, 4, 2
    assert all(np.isfinite(r["loss"]) and r["pairs_mined"] > 0 for r in rows[1:])
    fingerprint = json.loads((tmp_path / "a" / RUN_FINGERPRINT).read_text())
    assert fingerprint["inputs"]["validation"] == "pitts30k-val"
    # More epochs resume the run's state and continue it bit for bit.
    again = _train(city, tmp_path / "a", {**MS, "epochs": 3})
    straight = _train(city, tmp_path / "b", {**MS, "epochs": 3})
    assert again["resumed"] and again["best_recall@5"] == straight["best_recall@5"]
    a = torch.load(tmp_path / "a" / CHECKPOINT_LAST, weights_only=True)["model_state"]
    b = torch.load(tmp_path / "b" / CHECKPOINT_LAST, weights_only=True)["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Validated on another split, it is another run: the state restarts.
    other = _train(city, tmp_path / "b", {**MS, "epochs": 1}, validation="pitts30k-test")
    assert not other["resumed"]


def test_triplets_on_labelled_places_are_refused(city, tmp_path):
    with pytest.raises(InputError, match="no queries, so no triplets.*multisimilarity"):
        _train(city, tmp_path / "t", {"epochs": 1})


def test_the_config_needs_multisimilarity_and_a_validation_split():
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    overlay = yaml.safe_load((ROOT / "config" / "gsv_cities.yaml").read_text())
    config = copy.deepcopy(base)
    update_config(config, overlay)  # the merge Snakemake makes of --configfile A B
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    pipeline.check(copy.deepcopy(config))
    assert pipeline.validation_split(config) == "pitts30k-val"
    for change, message in (
        ({"validation": None}, r"validation = None; expected a DATASET-SPLIT"),
        ({"validation": "gsvcities-train"}, "another dataset's split"),
        ({"train": {**config["train"], "regime": "triplet"}}, "train.regime = 'triplet'"),
        ({"synthetic": {**config["synthetic"], "settings": base["synthetic"]["settings"]}},
         "synthetic.settings.gsv_places = 0"),
    ):  # fmt: skip
        with pytest.raises(InputError, match=message):
            pipeline.check({**copy.deepcopy(config), **change})
    bad = copy.deepcopy(config)
    bad["datasets"]["gsvcities"]["layout"] = "netvlad"
    with pytest.raises(InputError, match="datasets.gsvcities.layout = 'netvlad'"):
        pipeline.check(bad)


def test_the_workflow_passes_the_validation_split_to_training(tmp_path):
    done = snakemake(
        scratch_workdir(tmp_path), "-n", "-p", "--cores", "2", "--",
        "results/runs/gsvcities-vgg16-icsa-b5-s0/checkpoint_best.pt",
        config="config/config.yaml config/gsv_cities.yaml",
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-2000:]
    train = next(line for line in out.splitlines() if line.startswith("Shell command: icsa train"))
    assert "--layout gsvcities" in train and '"regime": "multisimilarity"' in train
    assert "--val pitts30k-val --val-root data/synthetic/pitts30k --val-layout netvlad" in train
    assert "check_dataset" in out and "results/datasets/pitts30k.json" in out


def test_the_plan_counts_labelled_places_and_the_validation_split(city):
    from icsa.plan import Rates, plan_training

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((ROOT / "config" / "gsv_cities.yaml").read_text()))
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    config["synthetic"] = None
    config["datasets"] = {
        "pitts30k": {"root": str(city / "pitts30k")},
        "gsvcities": {"root": str(city / "gsvcities"), "layout": "gsvcities"},
    }
    config["model"]["image_size"] = [32, 32]
    plan = plan_training(config, "gsvcities-vgg16-icsa-b5-s0", Rates(100.0))
    assert plan["counts"]["train"] == [40, 0]  # the role's 40 images, no queries
    assert plan["counts"]["val"] == [24, 12]  # pitts30k-val, not a val split of gsvcities


def test_icsa_train_validates_on_the_split_its_flags_name(city, tmp_path, capsys):
    from icsa.cli import main

    spec = RunSpec("gsvcities", ModelSpec(**MODEL), TrainSettings(**{**MS, "epochs": 1}), 0)
    argv = [
        "train",
        "--spec",
        spec.to_json(),
        "--root",
        str(city / "gsvcities"),
        "--layout",
        "gsvcities",
        "--run-dir",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--no-dvclive",
    ]
    assert main([*argv, "--val", "pitts30k-val"]) == 2  # without --val-root
    assert "--val-root = None: expected both or neither" in capsys.readouterr().err
    assert main([*argv, "--val", "pitts30k-test", "--val-root", str(city / "pitts30k")]) == 0
    fingerprint = json.loads((tmp_path / "run" / RUN_FINGERPRINT).read_text())
    assert fingerprint["inputs"]["validation"] == "pitts30k-test"
