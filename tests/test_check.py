"""`icsa prepare check` and the dataset check: good folders pass, every bad input is named and
nothing is written; `icsa prepare synthetic`'s settings parsing."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from icsa.cli import main
from icsa.data import FIELDS_10, check_dataset, read_dbstruct, write_dbstruct
from icsa.data.synthetic import CitySettings
from icsa.errors import InputError
from tests.helpers.datasets import make_dataset

torch.set_num_threads(1)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_check_good_dataset_prints_summary_and_writes_index(tmp_path, capsys):
    root = tmp_path / "pitts"
    make_dataset(root, "pitts30k", {"train": (6, 4), "val": (5, 3), "test": (7, 2)})
    index_path = tmp_path / "out" / "index.json"
    rc, out, _ = run_cli(
        ["prepare", "check", "--root", str(root), "--dataset", "pitts30k",
         "--index-out", str(index_path), "--workers", "1"],
        capsys,
    )  # fmt: skip
    assert rc == 0
    assert out.splitlines()[:3] == [
        "< pitts30k-train - #q: 4; #db: 6 >",
        "< pitts30k-val - #q: 3; #db: 5 >",
        "< pitts30k-test - #q: 2; #db: 7 >",
    ]
    index = json.loads(index_path.read_text())
    assert index["dataset"] == "pitts30k" and index["root"] == str(root.resolve())
    test = index["splits"]["test"]
    assert (test["num_db"], test["num_q"], test["ok"]) == (7, 2, True)
    assert test["image_size"] == [12, 16] and test["image_sizes"] == {"12x16": 9}
    assert Path(test["source"]) == (root / "datasets/pitts30k_test.mat").resolve()


def test_check_with_a_process_pool_on_tokyotm(tmp_path):
    # >= 64 images so that the pool path runs; one split only
    make_dataset(tmp_path, "tokyotm", {"train": (50, 20), "val": (3, 3)}, hw=(8, 8))
    index = check_dataset(tmp_path, "tokyotm", splits=["train"], workers=2)
    assert list(index["splits"]) == ["train"]
    assert index["splits"]["train"]["image_sizes"] == {"8x8": 70}


def assert_fails_and_writes_nothing(tmp_path, root, dataset, pattern, capsys, splits=None):
    index_path = tmp_path / "idx" / "index.json"
    with pytest.raises(InputError, match=pattern):
        check_dataset(root, dataset, splits=splits, workers=1, index_out=index_path)
    argv = ["prepare", "check", "--root", str(root), "--dataset", dataset]
    argv += ["--index-out", str(index_path), "--workers", "1"]
    argv += ["--splits", *splits] if splits else []
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2 and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("icsa prepare: error: ") and str(root) in last
    assert not (tmp_path / "idx").exists()  # nothing written, not even a temporary


def test_missing_root_and_missing_mat(tmp_path, capsys):
    assert_fails_and_writes_nothing(
        tmp_path, tmp_path / "absent", "tokyo247",
        r"absent: dataset root not found.*datasets/tokyo247\.mat.*NetVLAD authors", capsys,
    )  # fmt: skip
    make_dataset(tmp_path / "p", "pitts250k", {"train": (2, 2), "test": (2, 2)})
    assert_fails_and_writes_nothing(
        tmp_path, tmp_path / "p", "pitts250k", r"pitts250k_val\.mat: dbStruct file not found",
        capsys,
    )  # fmt: skip


def test_bad_mat_files(tmp_path, capsys):
    root = tmp_path / "p"
    db = make_dataset(root, "pitts30k", {"test": (4, 3)})["test"]
    mat = root / "datasets/pitts30k_test.mat"

    def save(fields, values):
        struct = np.empty((1, 1), dtype=[(f, object) for f in fields])
        for f in fields:
            struct[0, 0][f] = values[f]
        scipy.io.savemat(mat, {"dbStruct": struct})

    values = scipy.io.loadmat(mat)["dbStruct"][0, 0]
    values = {f: values[f] for f in FIELDS_10}
    scipy.io.savemat(mat, {"notIt": np.ones(2)})
    assert_fails_and_writes_nothing(
        tmp_path, root, "pitts30k", r"pitts30k_test\.mat: no variable 'dbStruct'", capsys,
        splits=["test"],
    )  # fmt: skip
    save([f for f in FIELDS_10 if f != "posDistThr"], values)
    assert_fails_and_writes_nothing(
        tmp_path, root, "pitts30k",
        r"pitts30k_test\.mat: dbStruct lacks field\(s\) \['posDistThr'\]", capsys, splits=["test"],
    )  # fmt: skip
    save(FIELDS_10, {**values, "numQueries": np.array([[db.num_q + 2.0]])})
    assert_fails_and_writes_nothing(
        tmp_path, root, "pitts30k", r"pitts30k_test\.mat: query counts disagree: num=5, 3 image",
        capsys, splits=["test"],
    )  # fmt: skip


def test_missing_and_undecodable_images_are_counted_and_named(tmp_path, capsys):
    root = tmp_path / "p"
    db = make_dataset(root, "pitts30k", {"test": (12, 4)})["test"]
    for name in db.db_images[:7]:
        (root / name).unlink()
    (root / "queries_real" / db.q_images[1]).write_bytes(b"not a jpeg")
    full = root / db.db_images[9]
    full.write_bytes(full.read_bytes()[:60])  # truncated JPEG: the header opens, pixels do not
    first_five = ", ".join(db.db_images[:5])
    assert_fails_and_writes_nothing(
        tmp_path, root, "pitts30k", rf"7 of 16 images are missing \(first: {first_five}\); "
        rf"2 of 16 images do not decode \(first: queries_real/{db.q_images[1]} \(.*\), "
        rf"{db.db_images[9]} \(.*\)\)", capsys,
        splits=["test"],
    )  # fmt: skip


def test_city_settings_report_unknown_keys_and_convert_lists(tmp_path, capsys):
    got = CitySettings.from_dict({"train_db": 9, "query_fov_range": [40, 50]})
    assert got.train_db == 9 and got.query_fov_range == (40, 50)
    with pytest.raises(InputError, match=r"unknown keys \['colour'\]; valid keys are \["):
        CitySettings.from_dict({"colour": 1})
    bad = tmp_path / "s.json"
    bad.write_text("[1, 2]")
    rc, _, err = run_cli(["prepare", "synthetic", "--out", str(tmp_path / "o"),
                          "--settings", f"@{bad}"], capsys)  # fmt: skip
    assert rc == 2 and "expected an object" in err and not (tmp_path / "o").exists()


def test_synthetic_settings_errors_list_valid_keys(tmp_path, capsys):
    rc, _, err = run_cli(["prepare", "synthetic", "--out", str(tmp_path / "o"),
                          "--settings", '{"no_such_knob": 1}'], capsys)  # fmt: skip
    assert rc == 2 and "no_such_knob" in err and "valid keys" in err
    assert "train_db" in err or dataclasses.fields(CitySettings)[0].name in err
    assert not (tmp_path / "o").exists()


def test_synthetic_cli_output_passes_the_check(tmp_path, capsys):
    """End to end: `icsa prepare synthetic` on a tiny city, then `icsa prepare check` on it."""
    tiny = {
        "train_db": 8, "train_q": 4, "val_db": 8, "val_q": 4, "test_db": 8, "test_q": 4,
        "tokyo_train_db": 8, "tokyo_train_q": 4, "tokyo_val_db": 8, "tokyo_val_q": 4,
        "image_height": 24, "image_width": 32,
    }  # fmt: skip
    out = tmp_path / "city"
    rc, text, _ = run_cli(
        ["prepare", "synthetic", "--out", str(out), "--seed", "0", "--settings", json.dumps(tiny)],
        capsys,
    )
    assert rc == 0 and "< pitts30k-test - #q: " in text
    for dataset in ("pitts30k", "tokyotm"):
        index = check_dataset(out / dataset, dataset, workers=1)
        assert all(info["ok"] for info in index["splits"].values())


def test_duplicate_names_and_mixed_sizes_are_reported(tmp_path, capsys):
    root = tmp_path / "pitts"
    make_dataset(root, "pitts30k", {"test": (6, 2)})
    mat = root / "datasets" / "pitts30k_test.mat"
    db = read_dbstruct(mat)
    names = [*db.db_images[:5], db.db_images[0]]  # the first image listed twice
    write_dbstruct(mat, dataclasses.replace(db, db_images=names))
    Image.new("RGB", (20, 10)).save(root / db.db_images[1])  # another size
    index_path = tmp_path / "index.json"
    rc, out, _ = run_cli(["prepare", "check", "--root", str(root), "--dataset", "pitts30k",
                          "--split", "test", "--index-out", str(index_path), "--workers", "1"],
                         capsys)  # fmt: skip
    assert rc == 0
    test = json.loads(index_path.read_text())["splits"]["test"]
    assert (test["duplicate_db_images"], test["duplicate_q_images"]) == (1, 0)
    assert test["image_size"] is None and test["image_sizes"] == {"10x20": 1, "12x16": 7}
    assert "pitts30k-test lists 1 database and 0 query image names more than once" in out
    assert "pitts30k-test mixes image sizes" in out


def test_a_split_without_queries_is_a_logged_warning_naming_its_file(tmp_path, capsys, caplog):
    # Nothing lost, round two: training on it used to save an untrained model as the best epoch.
    root = tmp_path / "pitts"
    make_dataset(root, "pitts30k", {"train": (6, 0), "val": (5, 3)})
    with caplog.at_level(logging.WARNING, logger="icsa.data.check"):
        rc, _, _ = run_cli(["prepare", "check", "--root", str(root), "--dataset", "pitts30k",
                            "--index-out", str(tmp_path / "index.json"), "--workers", "1",
                            "--splits", "train", "val"], capsys)  # fmt: skip
    assert rc == 0  # a warning: the split may be meant as a database only
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    mat = root / "datasets" / "pitts30k_train.mat"
    assert len(warnings) == 1 and warnings[0].startswith(f"{mat} (pitts30k-train): no queries")


def test_the_default_index_keeps_the_folder_it_records(tmp_path, capsys, monkeypatch):
    """Nothing lost, round two: `icsa prepare check --root OTHER` without --index-out replaced
    the workflow's results/datasets/<dataset>.json with another folder's index."""
    monkeypatch.chdir(tmp_path)  # the default index is relative to the working directory
    mine, other = tmp_path / "mine", tmp_path / "other"
    for root in (mine, other):
        make_dataset(root, "pitts30k", {"test": (3, 2)})
    index = Path("results/datasets/pitts30k.json")
    check = ["prepare", "check", "--dataset", "pitts30k", "--splits", "test", "--workers", "1",
             "--root"]  # fmt: skip
    assert run_cli([*check, str(mine)], capsys)[0] == 0  # no index yet: written
    assert run_cli([*check, str(mine)], capsys)[0] == 0  # the folder it records: rewritten
    written = index.read_bytes()
    rc, out, err = run_cli([*check, str(other)], capsys)
    assert rc == 2 and out == ""
    first = err.splitlines()[0]
    assert first.startswith(f"icsa prepare: error: {index}: the index of {mine.resolve()}")
    assert f"--root {other}" in first and "--index-out" in first
    assert index.read_bytes() == written
    elsewhere = tmp_path / "other.json"
    assert run_cli([*check, str(other), "--index-out", str(elsewhere)], capsys)[0] == 0
    assert json.loads(elsewhere.read_text())["root"] == str(other.resolve())
