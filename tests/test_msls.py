"""MSLS-val in its own layout: a tiny synthetic folder shaped like the MSLS archive plus
gsv-cities' four msls_val_*.npy lists. The official query subset, its positives, the per-city
split and per-city results match a brute-force numpy evaluation; the dataset check accepts it."""

from __future__ import annotations

import csv
import json

import faiss
import numpy as np
import pytest
import torch
from PIL import Image

from icsa.cli import main
from icsa.data import check_dataset, load_split
from icsa.data.layouts import dataset_splits
from icsa.errors import InputError
from icsa.evaluate.metrics import evaluate_split

NS = (1, 3, 5)
CITIES = {"cph": (8, 6), "sf": (10, 7)}  # database, all queries per city


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def write_msls(root, rng):
    """MSLS's train_val/<city>/{database,query}/ with images and postprocessed.csv, and the
    four lists: database paths, all query paths, the official subset qIdx, its pIdx."""
    db_names, q_names = [], []
    for city, (n_db, n_q) in CITIES.items():
        for part, n, names in (("database", n_db, db_names), ("query", n_q, q_names)):
            folder = root / "train_val" / city / part
            (folder / "images").mkdir(parents=True)
            rows = []
            for i in range(n):
                key = f"{city}{part[0]}{i:03d}"
                image = Image.new("RGB", (8, 6), (i * 20 % 255, 40, 90))
                image.save(folder / "images" / f"{key}.jpg")
                rows.append({"": i, "key": key, "easting": 1000.0 * i, "northing": 50.0})
                names.append(f"train_val/{city}/{part}/images/{key}.jpg")
            with open(folder / "postprocessed.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["", "key", "easting", "northing"])
                writer.writeheader()
                writer.writerows(rows)
    db_city = np.array([n.split("/")[1] for n in db_names])
    q_idx = np.array([0, 2, 3, 5, 7, 9, 10, 12])  # the official subset: not every query
    p_idx = np.empty(len(q_idx), dtype=object)
    for i, qi in enumerate(q_idx):
        same = np.flatnonzero(db_city == q_names[qi].split("/")[1])
        p_idx[i] = np.sort(rng.choice(same, 2, replace=False))
    np.save(root / "msls_val_dbImages.npy", np.array(db_names))
    np.save(root / "msls_val_qImages.npy", np.array(q_names))
    np.save(root / "msls_val_qIdx.npy", q_idx)
    np.save(root / "msls_val_pIdx.npy", p_idx, allow_pickle=True)
    return db_names, q_names, q_idx, p_idx


def brute_force_ranks(db, q, lists, k):
    dist = ((q.astype(np.float64)[:, None] - db.astype(np.float64)[None]) ** 2).sum(-1)
    ranks = []
    for i in range(len(q)):
        top = np.argsort(dist[i], kind="stable")[:k]
        hit = np.flatnonzero(np.isin(top, lists[i]))  # gsv-cities: np.in1d(pred[:n], gt[q])
        ranks.append(int(hit[0]) if len(hit) else -1)
    return np.array(ranks)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def msls(tmp_path):
    rng = np.random.default_rng(7)
    lists = write_msls(tmp_path, rng)
    db = unit(rng.standard_normal((len(lists[0]), 8)))
    return tmp_path, lists, db, rng


def test_official_subset_and_its_positives(msls):
    root, (db_names, q_names, q_idx, p_idx), db, rng = msls
    split = load_split(root, "msls", "val", "msls")
    assert split.db.num_db == len(db_names) and split.db.num_q == len(q_idx) < len(q_names)
    assert [p.relative_to(root).as_posix() for p in split.q_paths] == [q_names[i] for i in q_idx]
    assert [p.relative_to(root).as_posix() for p in split.db_paths] == db_names
    assert [p.tolist() for p in split.positives] == [list(p) for p in p_idx]
    assert split.q_groups == tuple(q_names[i].split("/")[1] for i in q_idx)
    # Positions from postprocessed.csv: query key i of a city sits at easting 1000·i.
    assert split.db.q_utm[1].tolist() == [1000.0 * int(q_names[q_idx[1]][-7:-4]), 50.0]
    assert dataset_splits(root, "msls", "msls") == ["val"]


def test_msls_val_and_per_city_match_brute_force(msls):
    root, (db_names, q_names, q_idx, p_idx), db, rng = msls
    owner = np.array([p[0] for p in p_idx])
    q = unit(db[owner] + 0.9 * rng.standard_normal((len(q_idx), 8)))
    np.save(root / "db.npy", db)
    np.save(root / "q.npy", q)
    split = load_split(root, "msls", "val", "msls")
    metrics, perquery = evaluate_split(split, root / "db.npy", root / "q.npy", "x", ns=NS)
    ranks = brute_force_ranks(db, q, list(p_idx), max(NS))
    np.testing.assert_array_equal(perquery["first_hit_rank"], ranks)
    assert metrics["ground_truth"] == "index-lists"
    assert metrics["recalls"] == {str(n): float(np.mean((ranks >= 0) & (ranks < n))) for n in NS}
    assert 0 < metrics["recalls"]["1"] < 1  # neither trivial nor hopeless
    q_city = np.array([q_names[i].split("/")[1] for i in q_idx])
    assert set(metrics["per_city"]) == set(CITIES)
    for city, result in metrics["per_city"].items():
        mine = ranks[q_city == city]
        assert result["num_q"] == len(mine)
        assert result["found"] == {str(n): int(np.sum((mine >= 0) & (mine < n))) for n in NS}
    # The per-city split: that city's official queries against that city's database only.
    db_city = np.array([n.split("/")[1] for n in db_names])
    for city in CITIES:
        sub = load_split(root, "msls", f"val-{city}", "msls")
        keep_db, keep_q = np.flatnonzero(db_city == city), np.flatnonzero(q_city == city)
        assert [p.relative_to(root).as_posix() for p in sub.db_paths] == [
            db_names[i] for i in keep_db
        ]
        names = [[sub.db.db_images[j] for j in p] for p in sub.positives]
        assert names == [[db_names[j] for j in p_idx[i]] for i in keep_q]  # re-indexed
        np.save(root / "cdb.npy", db[keep_db])
        np.save(root / "cq.npy", q[keep_q])
        _, per = evaluate_split(sub, root / "cdb.npy", root / "cq.npy", "x", ns=NS)
        lists = [np.searchsorted(keep_db, p_idx[i]) for i in keep_q]
        np.testing.assert_array_equal(
            per["first_hit_rank"], brute_force_ranks(db[keep_db], q[keep_q], lists, max(NS))
        )


def test_icsa_evaluate_reads_the_msls_layout(msls, tmp_path, capsys):
    root, (_, _, q_idx, p_idx), db, rng = msls
    np.save(root / "db.npy", db)
    np.save(root / "q.npy", unit(rng.standard_normal((len(q_idx), 8))))
    out = tmp_path / "m.json"
    argv = ["evaluate", "--root", str(root), "--dataset", "msls", "--layout", "msls", "--split",
            "val", "--db", str(root / "db.npy"), "--q", str(root / "q.npy"), "--model-id", "x",
            "--ns", "1", "5", "--out-metrics", str(out)]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert metrics["ground_truth"] == "index-lists" and metrics["num_q"] == len(q_idx)
    assert sum(c["num_q"] for c in metrics["per_city"].values()) == len(q_idx)
    assert main([*argv, "--policy", "nordland5"]) != 0
    assert "policy = 'nordland5' is unknown" in capsys.readouterr().err


def test_the_dataset_check_accepts_the_msls_layout(msls, tmp_path):
    root = msls[0]
    index = check_dataset(root, "msls", layout="msls", workers=1)
    assert index["layout"] == "msls" and index["splits"]["val"]["num_q"] == 8
    assert index["splits"]["val"]["image_size"] == [6, 8]
    out = tmp_path / "index.json"
    argv = ["prepare", "check", "--root", str(root), "--dataset", "msls", "--layout", "msls"]
    assert main([*argv, "--index-out", str(out), "--workers", "1"]) == 0 and out.is_file()
    (root / "train_val" / "sf" / "query" / "images" / "sfq006.jpg").unlink()  # an official query
    with pytest.raises(InputError, match="1 of .* images are missing.*sfq006.jpg"):
        check_dataset(root, "msls", layout="msls", workers=1)


def test_msls_errors_name_the_file(msls):
    root, (_, _, q_idx, p_idx), *_ = msls
    with pytest.raises(InputError, match="city = 'oslo' has no official query"):
        load_split(root, "msls", "val-oslo", "msls")
    with pytest.raises(InputError, match="expected 'val' or val-<city>"):
        load_split(root, "msls", "test", "msls")
    np.save(root / "msls_val_pIdx.npy", p_idx[:-1], allow_pickle=True)
    with pytest.raises(InputError, match=f"msls_val_pIdx.npy: {len(q_idx) - 1} lists, expected"):
        load_split(root, "msls", "val", "msls")
    (root / "msls_val_qIdx.npy").unlink()
    with pytest.raises(InputError, match="msls_val_qIdx.npy: not found.*gsv-cities"):
        load_split(root, "msls", "val", "msls")
