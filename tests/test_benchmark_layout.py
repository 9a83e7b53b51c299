"""The benchmark's file-name layout: names parse and round-trip exactly, the synthetic city reads
the same in both layouts, the converter round-trips, positives follow the 25 m / 10 m radii, and
the dataset check names every bad file. (The whole workflow on it: tests/test_workflow_e2e.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch

from icsa.cli import main
from icsa.data import benchmark, check_dataset, load_split
from icsa.data.convert import convert
from icsa.data.geometry import eval_positives, training_positives
from icsa.data.layouts import dataset_splits
from icsa.data.synthetic import CitySettings, generate
from icsa.errors import InputError

torch.set_num_threads(1)

TINY = CitySettings(
    image_height=24, image_width=32, train_db=16, train_q=6, val_db=8, val_q=4, test_db=16,
    test_q=8, tokyo_train_db=12, tokyo_train_q=4, tokyo_val_db=16, tokyo_val_q=6,
)  # fmt: skip
DATASETS = ("pitts30k", "tokyotm")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def cities(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    generate(base / "netvlad", 0, TINY, workers=1, progress=False)
    generate(base / "benchmark", 0, TINY, workers=1, progress=False, layout="benchmark")
    return base


def _name(east: str, north: str, ext: str = ".jpg") -> str:
    return "@" + "@".join([east, north] + [""] * 12) + "@" + ext


def test_a_name_round_trips_exactly_and_bad_names_are_named():
    rng = np.random.default_rng(0)
    for east, north in rng.uniform([1e5, 1e6], [9e5, 9e6], size=(200, 2)):
        name = benchmark.BenchmarkName(east, north, "17", "T", timestamp="20130101", note="a%2Fb")
        back = benchmark.parse_name(f"x/y/{name.file_name()}")
        assert back == name and (back.east, back.north) == (east, north)  # bit-exact floats
    # The benchmark's own names: fixed-width UTM, empty fields.
    parsed = benchmark.parse_name("@0584233.46@4477151.18@17@T@040.44@-079.99@@@@@@@@@.jpg")
    assert (parsed.east, parsed.north, parsed.latitude) == (584233.46, 4477151.18, "040.44")
    for bad, why in (
        ("000123_pitch1_yaw3.jpg", "not a benchmark image name"),
        ("@1@2@.jpg", "found 2"),
        (_name("east", "2"), "expected numbers"),
        (_name("nan", "2"), "not a position"),
        (_name("1", "2", ext=".txt"), "not a benchmark image name"),
    ):
        with pytest.raises(InputError, match=why) as err:
            benchmark.parse_name(Path("images/test/database") / bad)
        assert bad in str(err.value)
    with pytest.raises(InputError, match="may not hold"):
        benchmark.BenchmarkName(1.0, 2.0, note="a/b").file_name()


def test_the_city_reads_the_same_in_both_layouts(cities):
    for dataset in DATASETS:
        splits = dataset_splits(cities / "netvlad" / dataset, dataset)
        assert dataset_splits(cities / "benchmark" / dataset, dataset, "benchmark") == splits
        for split in splits:
            a = load_split(cities / "netvlad" / dataset, dataset, split)
            b = load_split(cities / "benchmark" / dataset, dataset, split, "benchmark")
            for field in ("db_utm", "q_utm", "db_timestamps", "q_timestamps"):
                np.testing.assert_array_equal(getattr(a.db, field), getattr(b.db, field))
            assert (a.db.num_db, a.db.num_q) == (b.db.num_db, b.db.num_q)
            assert (a.db.pos_dist_thr, a.db.non_triv_pos_dist_sq_thr) == (25.0, 100.0)
            assert (b.db.pos_dist_thr, b.db.non_triv_pos_dist_sq_thr) == (25.0, 100.0)
            # Row i is the same image: its bytes, and its NetVLAD name in the note field.
            for pa, pb, name in zip(a.db_paths + a.q_paths, b.db_paths + b.q_paths,
                                    a.db.db_images + a.db.q_images):  # fmt: skip
                assert pa.read_bytes() == pb.read_bytes()
                assert unquote(benchmark.parse_name(pb).note) == name
            # The benchmark's order: the files sorted by name, as its loader globs them.
            folder = b.source / "database"
            assert b.db.db_images == sorted(p.name for p in folder.iterdir())
            assert (
                a.digest() != b.digest()
                and b.digest()
                == load_split(cities / "benchmark" / dataset, dataset, split, "benchmark").digest()
            )


def test_positives_follow_the_25_and_10_metre_radii_with_the_time_rule(cities):
    split = load_split(cities / "benchmark" / "tokyotm", "tokyotm", "val", "benchmark")
    db = split.db
    assert db.has_timestamps  # from the timestamp field: the time machine's capture dates
    dist = np.linalg.norm(db.q_utm[:, None] - db.db_utm[None], axis=-1)
    other_time = db.q_timestamps[:, None] != db.db_timestamps[None]
    for radius, found in ((25.0, eval_positives(db)), (10.0, training_positives(db))):
        expected = [np.flatnonzero(row) for row in (dist <= radius) & other_time]
        assert all(np.array_equal(f, e) for f, e in zip(found, expected))
    assert any(len(e) for e in expected)
    # Outside a time machine the timestamp field is only a note: no capture times.
    (cities / "named").mkdir(exist_ok=True)
    copy = cities / "named" / "mycity"
    if not copy.exists():
        copy.symlink_to(cities / "benchmark" / "tokyotm")
    assert not load_split(copy, "mycity", "val", "benchmark").db.has_timestamps


def test_the_converter_round_trips_byte_for_byte(cities, tmp_path):
    for dataset in DATASETS:
        there = tmp_path / "b" / dataset
        convert(cities / "netvlad" / dataset, dataset, "netvlad", "benchmark", there)
        assert _files(there) == _files(cities / "benchmark" / dataset)
        back = tmp_path / "n" / dataset
        convert(there, dataset, "benchmark", "netvlad", back, progress=False)
        original = _files(cities / "netvlad" / dataset)
        assert _files(back) == original  # .mat files and images, byte for byte
    with pytest.raises(InputError, match="not empty"):
        convert(cities / "netvlad" / "pitts30k", "pitts30k", "netvlad", "benchmark", back)
    with pytest.raises(InputError, match="two different layouts"):
        convert(back, "pitts30k", "netvlad", "netvlad", tmp_path / "x")


def test_check_covers_the_benchmark_layout_and_names_bad_files(cities, tmp_path, capsys):
    root = cities / "benchmark" / "pitts30k"
    index_out = tmp_path / "index.json"
    argv = ["prepare", "check", "--root", str(root), "--dataset", "pitts30k"]
    assert main([*argv, "--layout", "benchmark", "--index-out", str(index_out)]) == 0
    out = capsys.readouterr().out
    assert "< pitts30k-test - #q: 8; #db: 16 >" in out
    index = json.loads(index_out.read_text())
    assert index["layout"] == "benchmark" and index["splits"]["train"]["num_q"] == 6
    # The same folder read as the NetVLAD layout: no .mat, said so.
    assert main([*argv, "--index-out", str(tmp_path / "n.json")]) == 2
    assert "dbStruct file not found" in capsys.readouterr().err
    # A file whose name does not parse, and an image that does not decode: each named.
    bad = tmp_path / "bad"
    convert(cities / "netvlad" / "pitts30k", "pitts30k", "netvlad", "benchmark", bad, link=False)
    queries = bad / "images" / "val" / "queries"
    first = sorted(queries.iterdir())[0]
    first.rename(queries / "IMG_0001.jpg")
    with pytest.raises(InputError, match="IMG_0001.jpg: not a benchmark image name"):
        check_dataset(bad, "pitts30k", layout="benchmark", workers=1)
    (queries / "IMG_0001.jpg").rename(first)
    first.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=f"1 of .* images do not decode .*{first.name[:20]}"):
        check_dataset(bad, "pitts30k", layout="benchmark", workers=1)
    # Any dataset name in the benchmark layout; only known ones in the NetVLAD layout.
    index = check_dataset(root, "stlucia", layout="benchmark", workers=1)
    assert index["splits"]["test"]["name"] == "stlucia-test"
    with pytest.raises(InputError, match="unknown in the netvlad layout"):
        check_dataset(root, "stlucia", workers=1)


def test_convert_cli_refuses_a_split_the_netvlad_layout_lacks(cities, tmp_path, capsys):
    src = tmp_path / "src"
    convert(cities / "netvlad" / "pitts30k", "pitts30k", "netvlad", "benchmark", src)
    argv = ["prepare", "convert", "--root", str(src), "--dataset", "tokyotm",
            "--from", "benchmark", "--to", "netvlad", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "split(s) ['test'] have no tokyotm dbStruct" in err
    assert not (tmp_path / "out").exists()
    argv = ["prepare", "convert", "--root", str(src), "--dataset", "pitts30k",
            "--from", "benchmark", "--to", "netvlad", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main([*argv, "--utm-zone", "17T"]) == 0
    assert "< pitts30k-test - #q: 8; #db: 16 >" in capsys.readouterr().out
    assert main([*argv[:-1], str(tmp_path / "o2"), "--utm-zone", "TT"]) == 2
    assert "expected a zone such as 17T" in capsys.readouterr().err
