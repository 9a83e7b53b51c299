"""`icsa extract` → `icsa pca fit` → `icsa evaluate` on a tiny fake Pitts30k; bad inputs."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
import torch
from PIL import Image

from icsa.cli import main
from icsa.data import DbStruct, positives_within, write_dbstruct
from icsa.evaluate import recall_at_n
from icsa.models import build_model
from icsa.spec import ModelSpec
from icsa.train.checkpoint import save_checkpoint

RUN = "pitts30k-resnet18-icsa-bnone-s0"
NUM_DB, NUM_Q = 12, 6


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A Pitts30k-layout folder (queries are noisy views of database places) and a checkpoint."""
    root = tmp_path_factory.mktemp("pitts")
    rng = np.random.default_rng(0)
    scenes = rng.integers(0, 256, (NUM_DB, 48, 64, 3)).astype(np.int16)
    db_names = [f"000/db{i:02d}.png" for i in range(NUM_DB)]
    q_names = [f"q{i:02d}.png" for i in range(NUM_Q)]
    for name, pixels in zip(db_names, scenes):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(root / name)
    (root / "queries_real").mkdir()
    for i, name in enumerate(q_names):
        noisy = np.clip(scenes[2 * i] + rng.integers(-20, 21, scenes[0].shape), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(root / "queries_real" / name)
    db_utm = np.stack([np.arange(NUM_DB) * 100.0, np.zeros(NUM_DB)], axis=1)
    q_utm = db_utm[0 : 2 * NUM_Q : 2] + [15.0, 20.0]  # exactly 25 m from their scene
    q_utm[-1] = [5000.0, 5000.0]  # the last query has no positive
    write_dbstruct(root / "datasets" / "pitts30k_test.mat", DbStruct(
        "test", db_names, db_utm, q_names, q_utm, NUM_DB, NUM_Q, 25.0, 625.0, 100.0,
    ))  # fmt: skip
    model = build_model("resnet18", "icsa", num_clusters=4, image_size=(64, 64), init_seed=0)
    ckpt = root / "checkpoint_best.pt"
    save_checkpoint(ckpt, {"model_state": model.state_dict(), "model_config": model.config})
    return root, ckpt, db_utm, q_utm


def normalised(x: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm, float32: what `icsa evaluate` accepts."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def unit_rows(rng: np.random.Generator, rows: int, dim: int = 16) -> np.ndarray:
    """Random L2-normalised float32 descriptors, as the model writes them."""
    return normalised(rng.standard_normal((rows, dim)))


def ckpt_config(ckpt):
    return torch.load(ckpt, weights_only=True)["model_config"]


def _extract(root, ckpt, out, *extra):
    return main(["extract", "--checkpoint", str(ckpt), "--root", str(root), "--dataset",
                 "pitts30k", "--split", "test", "--out-db", str(out / "x-db.npy"), "--out-q",
                 str(out / "x-q.npy"), "--batch-size", "4", "--workers", "0", *extra])  # fmt: skip


def _evaluate(root, db, q, out, *extra):
    return main(["evaluate", "--root", str(root), "--dataset", "pitts30k", "--split", "test",
                 "--db", str(db), "--q", str(q), "--model-id", RUN, "--out-metrics",
                 str(out / "m.json"), "--out-perquery", str(out / "m.npz"), *extra])  # fmt: skip


def test_round_trip(world, tmp_path):
    root, ckpt, db_utm, q_utm = world
    spec = ModelSpec.from_dict(dict(ckpt_config(ckpt)))
    assert _extract(root, ckpt, tmp_path, "--model-spec", json.dumps(spec.to_dict())) == 0
    db, q = np.load(tmp_path / "x-db.npy"), np.load(tmp_path / "x-q.npy")
    assert db.shape == (NUM_DB, 2048) and q.shape == (NUM_Q, 2048)
    assert _evaluate(root, tmp_path / "x-db.npy", tmp_path / "x-q.npy", tmp_path) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {k: metrics[k] for k in ("model", "dataset", "split", "num_db", "num_q", "dim")} == {
        "model": RUN, "dataset": "pitts30k", "split": "test", "num_db": NUM_DB, "num_q": NUM_Q,
        "dim": 2048,
    }  # fmt: skip
    expected = recall_at_n(db, q, db_utm, q_utm)
    assert metrics["recalls"] == {str(n): r for n, r in expected.items()}
    assert metrics["queries_without_positive"] == 1 and metrics["threshold"] == 25.0
    assert metrics["recalls"]["20"] == pytest.approx(5 / 6)  # all found but the one without
    assert "search_s" in metrics["timings"]
    per = np.load(tmp_path / "m.npz")
    assert per["indices"].shape == per["distances"].shape == (NUM_Q, NUM_DB)  # k capped at N
    positives = positives_within(db_utm, q_utm, 25.0)
    for i, rank in enumerate(per["first_hit_rank"]):
        hits = [r for r, j in enumerate(per["indices"][i]) if j in positives[i]]
        assert rank == (hits[0] if hits else -1)
    for n, found in metrics["found"].items():
        ranks = per["first_hit_rank"]
        assert found == int(((ranks >= 0) & (ranks < int(n))).sum())

    # PCA whitening fitted on (here) the database descriptors, applied to both sides.
    assert main(["pca", "fit", "--db", str(tmp_path / "x-db.npy"), "--dim", "5", "--out",
                 str(tmp_path / "pca.npz")]) == 0  # fmt: skip
    assert _evaluate(root, tmp_path / "x-db.npy", tmp_path / "x-q.npy", tmp_path, "--pca",
                     str(tmp_path / "pca.npz"), "--ns", "1", "3") == 0  # fmt: skip
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["dim"] == 5 and metrics["descriptor_dim"] == 2048
    assert set(metrics["recalls"]) == {"1", "3"}


def test_bad_inputs_are_one_line_errors(world, tmp_path, capsys):
    root, ckpt, _, _ = world
    # A checkpoint for another model: names the differing keys.
    other = {**ckpt_config(ckpt), "backbone": "vgg16", "lowest_trained_block": "5"}
    assert _extract(root, ckpt, tmp_path, "--model-spec", json.dumps(other)) == 2
    err = capsys.readouterr().err
    assert "backbone: expected 'vgg16', found 'resnet18'" in err and "lowest_trained_block" in err
    unknown = json.dumps({**ckpt_config(ckpt), "backbone": "vgg19"})
    assert _extract(root, ckpt, tmp_path, "--model-spec", unknown) == 2
    err = capsys.readouterr().err
    assert "backbone='vgg19': expected one of vgg16, resnet18, resnet50, alexnet" in err
    assert not (tmp_path / "x-db.npy").exists()

    rng = np.random.default_rng(1)
    db, q = unit_rows(rng, NUM_DB), unit_rows(rng, NUM_Q)
    arrays = {"db": db, "q": q, "db8": normalised(db[:, :8]), "q8": normalised(q[:, :8]),
              "nan": db.copy()}  # fmt: skip
    for name, arr in arrays.items():
        if name == "nan":
            arr[[2, 7], 3] = np.nan
        np.save(tmp_path / f"{name}.npy", arr)
    cases = [
        ("q.npy", "q.npy", f"q.npy: {NUM_Q} rows, expected {NUM_DB}"),
        ("nan.npy", "q.npy", "nan.npy: 2 rows contain NaN"),
        ("db.npy", "q8.npy", "dims differ"),
        ("db.npy", "missing.npy", "missing.npy not found"),
    ]
    for db_name, q_name, message in cases:
        assert _evaluate(root, tmp_path / db_name, tmp_path / q_name, tmp_path) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # A PCA fitted on descriptors of another model (16-D) for 8-D descriptors.
    assert main(["pca", "fit", "--db", str(tmp_path / "db.npy"), "--dim", "4", "--out",
                 str(tmp_path / "pca16.npz")]) == 0  # fmt: skip
    capsys.readouterr()
    pca = ["--pca", str(tmp_path / "pca16.npz")]
    assert _evaluate(root, tmp_path / "db8.npy", tmp_path / "q8.npy", tmp_path, *pca) == 2
    assert "fitted on 16-D descriptors, but" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_evaluate_refuses_descriptors_of_another_run(world, tmp_path, capsys):
    """Issue 16: `icsa evaluate` checks the extraction record against the run's ModelSpec, the
    evaluation set and the descriptor files as they are now."""
    root, ckpt, _, _ = world
    spec = ModelSpec.from_dict(dict(ckpt_config(ckpt))).to_dict()
    record = tmp_path / "x.json"
    assert _extract(root, ckpt, tmp_path, "--out-record", str(record)) == 0
    saved = json.loads(record.read_text())
    assert saved["model"] == {**ckpt_config(ckpt), "image_size": [64, 64]}
    assert saved["files"]["db"] == {"file": "x-db.npy", "rows": NUM_DB, "dim": 2048,
                                    "dtype": "float32"}  # fmt: skip
    db, q = tmp_path / "x-db.npy", tmp_path / "x-q.npy"
    checked = ["--record", str(record), "--model-spec"]
    assert _evaluate(root, db, q, tmp_path, *checked, json.dumps(spec)) == 0
    capsys.readouterr()
    cases = [  # (model spec, record edit, descriptor edit) → message
        ({**spec, "num_clusters": 8}, None, None, "num_clusters: expected 8, found 4"),
        ({**spec, "init_seed": 1, "lowest_trained_block": "5"}, None, None,
         "init_seed: expected 1, found 0; lowest_trained_block: expected '5', found 'none'"),
        (spec, {"evalset": {"dataset": "pitts30k", "split": "val"}}, None,
         "made on pitts30k val, expected pitts30k test"),
        (spec, None, np.zeros((NUM_DB, 16), np.float32), "x-db.npy: changed since"),
    ]  # fmt: skip
    for model, edit, replaced, message in cases:
        record.write_text(json.dumps({**saved, **(edit or {})}))
        if replaced is not None:
            np.save(db, replaced)
        assert _evaluate(root, db, q, tmp_path / "o", *checked, json.dumps(model)) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
    assert _evaluate(root, db, q, tmp_path, "--model-spec", json.dumps(spec)) == 2
    assert "--model-spec: needs --record" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["tokyotm", "tokyo247"])
def test_dataset_rules_reach_the_metrics(dataset, tmp_path):
    """TokyoTM's capture-time rule and Tokyo 24/7's panoramas apply by dataset (no images
    needed to evaluate: descriptors and the dbStruct are enough)."""
    from icsa.evaluate import panorama_groups

    rng = np.random.default_rng(7)
    num_db, num_q = 48, 10
    db_utm = np.repeat(rng.integers(0, 300, (num_db // 12, 2)), 12, axis=0).astype(float)
    q_utm = db_utm[rng.integers(0, num_db, num_q)] + rng.integers(-10, 11, (num_q, 2))
    times = (rng.integers(0, 3, num_db).astype(float), rng.integers(0, 3, num_q).astype(float))
    timed = dataset == "tokyotm"
    db = normalised(rng.standard_normal((num_db, 8)))
    q = normalised(db[rng.integers(0, num_db, num_q)] + rng.standard_normal((num_q, 8)))
    if timed:  # TokyoTM: the queries are database images (their same-time twin is ranked first)
        rows = rng.choice(num_db, num_q, replace=False)
        q, q_utm, times = db[rows], db_utm[rows], (times[0], times[0][rows])
    mat = "tokyoTM_val.mat" if timed else "tokyo247.mat"
    split = "val" if timed else "test"
    write_dbstruct(tmp_path / "datasets" / mat, DbStruct(
        split, [f"d{i}.png" for i in range(num_db)], db_utm, [f"q{i}.png" for i in range(num_q)],
        q_utm, num_db, num_q, 25.0, 625.0, 100.0, *(times if timed else (None, None)),
    ))  # fmt: skip
    np.save(tmp_path / "db.npy", db)
    np.save(tmp_path / "q.npy", q)
    args = ["evaluate", "--root", str(tmp_path), "--dataset", dataset, "--split", split,
            "--db", str(tmp_path / "db.npy"), "--q", str(tmp_path / "q.npy"), "--model-id",
            "x", "--out-metrics", str(tmp_path / "m.json"), "--ns", "1", "2", "5"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    kwargs = {"db_times": times[0], "query_times": times[1]} if timed else {}
    if not timed:
        kwargs = {"db_groups": panorama_groups(num_db)}
    expected = recall_at_n(db, q, db_utm, q_utm, (1, 2, 5), **kwargs)
    assert metrics["recalls"] == {str(n): r for n, r in expected.items()}
    assert metrics["time_rule"] == ("drop-same-time" if timed else None)
    assert metrics["panorama_cutouts"] == (None if timed else 12)
    assert expected != recall_at_n(db, q, db_utm, q_utm, (1, 2, 5))  # the rule mattered


def test_tokyotm_without_capture_times_is_refused_unless_the_policy_is_plain(tmp_path, capsys):
    # Issue 16: without times the rule used to fall away silently (each query finds itself).
    rng = np.random.default_rng(3)
    db = normalised(rng.standard_normal((8, 4)))
    utm = rng.uniform(0, 500, (8, 2))
    write_dbstruct(tmp_path / "datasets" / "tokyoTM_val.mat", DbStruct(
        "val", [f"d{i}.png" for i in range(8)], utm, [f"q{i}.png" for i in range(3)], utm[:3],
        8, 3, 25.0, 625.0, 100.0,
    ))  # fmt: skip
    np.save(tmp_path / "db.npy", db)
    np.save(tmp_path / "q.npy", db[:3])  # the queries are database images, as in TokyoTM
    args = ["evaluate", "--root", str(tmp_path), "--dataset", "tokyotm", "--split", "val",
            "--db", str(tmp_path / "db.npy"), "--q", str(tmp_path / "q.npy"), "--model-id",
            "x", "--out-metrics", str(tmp_path / "m.json"), "--ns", "1"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "tokyoTM_val.mat: a tokyotm split without capture times" in err
    assert "--policy plain" in err and not (tmp_path / "m.json").exists()
    assert main([*args, "--policy", "plain"]) == 0  # explicit: each query finds itself
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["time_rule"] is None and metrics["recalls"] == {"1": 1.0}
    assert main([*args, "--policy", "timemachine"]) == 2
    err = capsys.readouterr().err
    assert "policy = 'timemachine' is unknown; expected one of ['plain', 'time-machine'" in err


def test_descriptors_that_are_not_unit_norm_are_refused(world, tmp_path, capsys):
    """Nothing lost, round two: all-zero descriptors reported R@1 29.2 (better than the model)."""
    root = world[0]
    rng = np.random.default_rng(4)
    db, q = unit_rows(rng, NUM_DB), unit_rows(rng, NUM_Q)
    # What the fast path and --dtype float16 can write: each element rounded to bfloat16 (8
    # significant bits), then stored as float16. Within the tolerance.
    rounded = torch.from_numpy(db).bfloat16().float().numpy().astype(np.float16)
    scaled = db.copy()
    scaled[[5, 9]] *= 2.0
    files = {"q": q, "rounded": rounded, "zeros": np.zeros_like(db), "scaled": scaled}
    for name, arr in files.items():
        np.save(tmp_path / f"{name}.npy", arr)
    assert _evaluate(root, tmp_path / "rounded.npy", tmp_path / "q.npy", tmp_path) == 0
    capsys.readouterr()
    cases = {"zeros": "12 of 12 rows are not unit-norm (first: row 0, norm 0)",
             "scaled": "2 of 12 rows are not unit-norm (first: row 5, norm 2)"}  # fmt: skip
    for name, message in cases.items():
        (tmp_path / "m.json").unlink(missing_ok=True)
        assert _evaluate(root, tmp_path / f"{name}.npy", tmp_path / "q.npy", tmp_path) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"icsa evaluate: error: database descriptors {tmp_path / name}.npy")
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "m.json").exists()
    # `icsa retrieve` reads descriptors the same way.
    out = tmp_path / "m.csv"
    args = ["retrieve", "--db", str(tmp_path / "zeros.npy"), "--q", str(tmp_path / "q.npy")]
    assert main([*args, "--out", str(out)]) == 2
    assert "not unit-norm" in capsys.readouterr().err and not out.exists()


def test_an_empty_descriptor_file_is_named(world, tmp_path, capsys):
    """Nothing lost, round two: a zero-byte .npy ended in numpy's EOFError, without the file."""
    root = world[0]
    rng = np.random.default_rng(5)
    np.save(tmp_path / "db.npy", unit_rows(rng, NUM_DB))
    np.save(tmp_path / "q.npy", unit_rows(rng, NUM_Q))
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    for db, q in ((empty, tmp_path / "q.npy"), (tmp_path / "db.npy", empty)):
        assert _evaluate(root, db, q, tmp_path) == 2
        err = capsys.readouterr().err
        assert err.startswith("icsa evaluate: error: ") and f"{empty}: cannot be read" in err
        assert err.count("\n") == 1 and "0 bytes" in err, err
    assert main(["pca", "fit", "--db", str(empty), "--dim", "2", "--out",
                 str(tmp_path / "pca.npz")]) == 2  # fmt: skip
    assert f"{empty}: cannot be read" in capsys.readouterr().err
    # A zero-byte PCA file and a record check over a zero-byte descriptor file: named too.
    (tmp_path / "pca.npz").write_bytes(b"")
    pca = ["--pca", str(tmp_path / "pca.npz")]
    assert _evaluate(root, tmp_path / "db.npy", tmp_path / "q.npy", tmp_path, *pca) == 2
    assert f"{tmp_path / 'pca.npz'}: cannot be read" in capsys.readouterr().err
    record = tmp_path / "x.json"
    shape, evalset = {"rows": NUM_DB, "dim": 16}, {"dataset": "pitts30k", "split": "test"}
    files = {"db": shape, "q": shape}
    record.write_text(json.dumps({"version": 1, "model": {}, "evalset": evalset, "files": files}))
    assert _evaluate(root, empty, tmp_path / "q.npy", tmp_path, "--record", str(record)) == 2
    err = capsys.readouterr().err
    assert f"{empty}: cannot be read" in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.json").exists()
