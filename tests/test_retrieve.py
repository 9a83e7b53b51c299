"""Issue 15: a trained model on one's own photos — `icsa extract --images DIR` and
`icsa retrieve`, round trip on a folder of the tiny city's images."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch

from icsa.cli import main
from icsa.data import load_split
from icsa.models import build_model
from icsa.train.checkpoint import save_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def photos(tiny_city, tmp_path_factory):
    """The val split's database and query images copied into two plain folders (nested, with a
    text file and a hidden file that are not images), and a checkpoint."""
    root, _ = tiny_city
    base = tmp_path_factory.mktemp("photos")
    split = load_split(root, "pitts30k", "val")
    folders = {}
    for side, paths in (("db", split.db_paths), ("q", split.q_paths)):
        folder = base / side
        for i, path in enumerate(paths):
            target = folder / f"street{i % 3}" / f"{side}{i:03d}{path.suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        (folder / "notes.txt").write_text("not an image")
        (folder / ".thumb.jpg").write_bytes(b"hidden, skipped")
        folders[side] = (folder, paths)
    model = build_model("vgg16", "icsa", num_clusters=4, image_size=(32, 32))
    checkpoint = base / "model.pt"
    save_checkpoint(checkpoint, {"model_state": model.state_dict(), "model_config": model.config})
    return root, folders, checkpoint


def _extract(checkpoint, *args):
    return main(["extract", "--checkpoint", str(checkpoint), "--workers", "0",
                 "--batch-size", "5", *args])  # fmt: skip


def test_folder_descriptors_match_the_dataset_and_retrieval_matches_brute_force(photos, tmp_path):
    root, folders, checkpoint = photos
    # Reference: the same images extracted as the dataset split.
    assert _extract(checkpoint, "--root", str(root), "--dataset", "pitts30k", "--split", "val",
                    "--out-db", str(tmp_path / "ref-db.npy"),
                    "--out-q", str(tmp_path / "ref-q.npy")) == 0  # fmt: skip
    mine = {}
    for side, (folder, paths) in folders.items():
        out = tmp_path / f"my-{side}.npy"
        assert _extract(checkpoint, "--images", str(folder), "--out", str(out)) == 0
        names = (tmp_path / f"my-{side}.txt").read_text().splitlines()
        expected = sorted(f"street{i % 3}/{side}{i:03d}{p.suffix}" for i, p in enumerate(paths))
        assert names == expected  # sorted, relative, only images, hidden files skipped
        rows = np.load(out)
        ref = np.load(tmp_path / f"ref-{side}.npy")
        order = [int(name.split("/")[1][len(side) : len(side) + 3]) for name in names]
        np.testing.assert_allclose(rows, ref[order], atol=1e-6)
        mine[side] = (rows, names)

    (db, db_names), (q, q_names) = mine["db"], mine["q"]
    out = tmp_path / "matches.csv"
    assert main(["retrieve", "--db", str(tmp_path / "my-db.npy"), "--q",
                 str(tmp_path / "my-q.npy"), "--k", "3", "--out", str(out)]) == 0  # fmt: skip
    with out.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 * len(q_names)
    distances = np.linalg.norm(q[:, None, :] - db[None, :, :], axis=2)  # brute force
    for i, name in enumerate(q_names):
        got = [row for row in table if row["query"] == name]
        assert [int(row["rank"]) for row in got] == [1, 2, 3]
        nearest = np.argsort(distances[i], kind="stable")[:3]
        assert [row["database"] for row in got] == [db_names[j] for j in nearest]
        np.testing.assert_allclose([float(r["distance"]) for r in got], distances[i, nearest],
                                   atol=1e-4)  # fmt: skip


def test_bad_folders_and_names_are_one_line_errors(photos, tmp_path, capsys):
    _, folders, checkpoint = photos
    folder = tmp_path / "broken"
    shutil.copytree(folders["q"][0], folder)
    (folder / "street0" / "zz-truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "x.npy"
    cases = [
        (["--images", str(folder), "--out", str(out)], "zz-truncated.jpg"),
        (["--images", str(tmp_path / "none"), "--out", str(out)], "not a folder"),
        (["--images", str(folder)], "expected --out X.npy"),
        (["--images", str(folder), "--out", str(out), "--split", "val"], "--split"),
        (["--out", str(out)], "--out: needs --images"),
    ]
    for args, message in cases:
        assert _extract(checkpoint, *args) == 2
        err = capsys.readouterr().err.rsplit("\r", 1)[-1]  # after the progress bar, if any
        last = err.strip().splitlines()[-1]
        assert message in last and "Traceback" not in err and err.count("error:") == 1, err
        assert not out.exists() and not out.with_suffix(".txt").exists()
    (tmp_path / "empty").mkdir()
    assert _extract(checkpoint, "--images", str(tmp_path / "empty"), "--out", str(out)) == 2
    assert "no images" in capsys.readouterr().err
    # A names file that does not fit its descriptors.
    good = tmp_path / "good.npy"
    assert _extract(checkpoint, "--images", str(folders["q"][0]), "--out", str(good)) == 0
    names = good.with_suffix(".txt")
    names.write_text("\n".join(names.read_text().splitlines()[:-1]) + "\n")
    capsys.readouterr()
    args = ["retrieve", "--db", str(good), "--q", str(good), "--out", str(tmp_path / "m.csv")]
    assert main(args) == 2
    assert f"names file {names}: " in capsys.readouterr().err
    assert main([*args[:-2], "--k", "0", "--out", str(tmp_path / "m.csv")]) == 2
    assert "--k 0: expected at least 1" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_empty_or_unreadable_descriptor_files_are_named(photos, tmp_path, capsys):
    """Nothing lost, round two: a database of 0 rows gave exit 0 and an empty CSV; a zero-byte
    .npy ended in numpy's EOFError without the file."""
    _, folders, checkpoint = photos
    good = tmp_path / "good.npy"
    assert _extract(checkpoint, "--images", str(folders["q"][0]), "--out", str(good)) == 0
    none = tmp_path / "none.npy"
    np.save(none, np.zeros((0, np.load(good).shape[1]), np.float32))
    none.with_suffix(".txt").write_text("")
    zero = tmp_path / "zero.npy"
    zero.write_bytes(b"")
    capsys.readouterr()
    out = tmp_path / "m.csv"
    cases = [
        (none, good, "database descriptors", "0 rows, expected at least one"),
        (good, none, "query descriptors", "0 rows, expected at least one"),
        (zero, good, "database descriptors", "cannot be read as a numpy .npy array (0 bytes"),
    ]
    for db, q, what, message in cases:
        assert main(["retrieve", "--db", str(db), "--q", str(q), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        bad = db if db != good else q
        assert err.startswith(f"icsa retrieve: error: {what} {bad}: {message}"), err
        assert err.count("\n") == 1 and not out.exists()


def test_a_bad_image_read_by_a_worker_process_is_named_first(photos, tmp_path, capsys):
    """Nothing lost, round two: with --workers 2 the error began "Caught InputError in
    DataLoader worker process 0" and named the file 30 lines later."""
    _, folders, checkpoint = photos
    folder = tmp_path / "broken"
    shutil.copytree(folders["q"][0], folder)
    bad = folder / "street1" / "zz-corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "x.npy"
    argv = ["extract", "--checkpoint", str(checkpoint), "--workers", "2", "--batch-size", "2"]
    assert main([*argv, "--images", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.rsplit("\r", 1)[-1]  # after the progress bar, if any
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(f"icsa extract: error: {bad}: cannot decode the image"), err
    assert "Caught" not in err and "Traceback" not in err and err.count("error:") == 1, err
    assert not out.exists()
