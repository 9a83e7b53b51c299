"""NetVLAD dbStruct I/O: round trips, any field order, the public positional reader, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from icsa.data import FIELDS_10, FIELDS_12, DbStruct, read_dbstruct, write_dbstruct
from icsa.errors import InputError
from tests.helpers.netvlad_public import netvlad_positional_reader

torch.set_num_threads(1)


def make_db(num_db: int = 7, num_q: int = 4, timestamps: bool = False, seed: int = 0) -> DbStruct:
    rng = np.random.default_rng(seed)
    return DbStruct(
        which_set="test",
        db_images=[f"{i // 3:03d}/{i:06d}_pitch1_yaw{i % 3 + 1}.jpg" for i in range(num_db)],
        db_utm=rng.uniform([585000, 4477000], [586000, 4478000], size=(num_db, 2)),
        q_images=[f"{i:03d}/{i:06d}_q.jpg" for i in range(num_q)],
        q_utm=rng.uniform([585000, 4477000], [586000, 4478000], size=(num_q, 2)),
        num_db=num_db,
        num_q=num_q,
        pos_dist_thr=25.0,
        pos_dist_sq_thr=625.0,
        non_triv_pos_dist_sq_thr=100.0,
        db_timestamps=rng.integers(200901, 201512, num_db).astype(float) if timestamps else None,
        q_timestamps=rng.integers(200901, 201512, num_q).astype(float) if timestamps else None,
    )


def assert_same(a: DbStruct, b: DbStruct) -> None:
    assert a.which_set == b.which_set
    assert a.db_images == b.db_images and a.q_images == b.q_images
    np.testing.assert_array_equal(a.db_utm, b.db_utm)
    np.testing.assert_array_equal(a.q_utm, b.q_utm)
    assert (a.num_db, a.num_q) == (b.num_db, b.num_q)
    assert (a.pos_dist_thr, a.pos_dist_sq_thr, a.non_triv_pos_dist_sq_thr) == (
        b.pos_dist_thr, b.pos_dist_sq_thr, b.non_triv_pos_dist_sq_thr,
    )  # fmt: skip
    for x, y in ((a.db_timestamps, b.db_timestamps), (a.q_timestamps, b.q_timestamps)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("timestamps", [False, True], ids=["10-field", "12-field-tokyoTM"])
def test_round_trip_identical_fields(tmp_path, timestamps):
    db = make_db(timestamps=timestamps)
    write_dbstruct(tmp_path / "x.mat", db)
    back = read_dbstruct(tmp_path / "x.mat")
    assert_same(db, back)
    raw = scipy.io.loadmat(tmp_path / "x.mat")["dbStruct"]
    assert raw.dtype.names == (FIELDS_12 if timestamps else FIELDS_10)
    # utm is stored 2×N as in MATLAB, names as an N×1 cell
    assert raw[0, 0]["utmDb"].shape == (2, db.num_db)
    assert raw[0, 0]["dbImageFns"].shape == (db.num_db, 1)


@pytest.mark.parametrize("timestamps", [False, True], ids=["10-field", "12-field-tokyoTM"])
def test_public_positional_reader_reads_writer_output(tmp_path, timestamps):
    db = make_db(timestamps=timestamps, seed=3)
    write_dbstruct(tmp_path / "x.mat", db)
    ref = netvlad_positional_reader(tmp_path / "x.mat")
    assert ref["whichSet"] == db.which_set
    assert ref["dbImage"] == db.db_images and ref["qImage"] == db.q_images
    np.testing.assert_array_equal(ref["utmDb"], db.db_utm)
    np.testing.assert_array_equal(ref["utmQ"], db.q_utm)
    assert (ref["numDb"], ref["numQ"]) == (db.num_db, db.num_q)
    assert type(ref["numDb"]) is int and type(ref["numQ"]) is int
    assert (ref["posDistThr"], ref["posDistSqThr"], ref["nonTrivPosDistSqThr"]) == (25, 625, 100)
    if timestamps:
        np.testing.assert_array_equal(ref["dbTimeStamp"], db.db_timestamps)
        np.testing.assert_array_equal(ref["qTimeStamp"], db.q_timestamps)


def test_reader_accepts_float_counts_from_other_writers(tmp_path):
    db = make_db(seed=4)
    path = tmp_path / "doubles.mat"
    override = {"numImages": float(db.num_db), "numQueries": float(db.num_q)}
    scipy.io.savemat(path, {"dbStruct": raw_struct(db, FIELDS_10, override=override)})
    assert scipy.io.loadmat(path)["dbStruct"][0, 0]["numImages"].dtype == np.float64
    assert_same(db, read_dbstruct(path))


def raw_struct(db: DbStruct, fields, drop=(), override=None) -> np.ndarray:
    """A dbStruct built with scipy directly, in the given field order (reader must not care)."""
    cell = lambda names: np.array([[n] for n in names], dtype=object).reshape(-1, 1)  # noqa: E731
    values = {
        "whichSet": db.which_set, "dbImageFns": cell(db.db_images), "utmDb": db.db_utm.T,
        "qImageFns": cell(db.q_images), "utmQ": db.q_utm.T, "numImages": db.num_db,
        "numQueries": db.num_q, "posDistThr": db.pos_dist_thr, "posDistSqThr": db.pos_dist_sq_thr,
        "nonTrivPosDistSqThr": db.non_triv_pos_dist_sq_thr,
        "dbTimeStamp": None if db.db_timestamps is None else db.db_timestamps[None, :],
        "qTimeStamp": None if db.q_timestamps is None else db.q_timestamps[None, :],
    }  # fmt: skip
    values.update(override or {})
    names = [f for f in fields if f not in drop]
    struct = np.empty((1, 1), dtype=[(n, object) for n in names])
    for n in names:
        struct[0, 0][n] = values[n]
    return struct


@pytest.mark.parametrize("timestamps", [False, True], ids=["10-field", "12-field-tokyoTM"])
def test_reads_fields_in_any_order(tmp_path, timestamps):
    db = make_db(timestamps=timestamps, seed=5)
    fields = list(FIELDS_12 if timestamps else FIELDS_10)
    for trial in range(3):
        order = list(np.random.default_rng(trial).permutation(fields))
        assert order != fields
        path = tmp_path / f"shuffled{trial}.mat"
        scipy.io.savemat(path, {"dbStruct": raw_struct(db, order)})
        assert scipy.io.loadmat(path)["dbStruct"].dtype.names == tuple(order)
        assert_same(db, read_dbstruct(path))


def test_writer_is_byte_identical_and_handles_empty(tmp_path):
    db = make_db(timestamps=True)
    write_dbstruct(tmp_path / "a.mat", db)
    write_dbstruct(tmp_path / "b.mat", db)
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
    empty = make_db(num_db=0, num_q=0)
    write_dbstruct(tmp_path / "e.mat", empty)
    assert_same(empty, read_dbstruct(tmp_path / "e.mat"))


def test_bad_files_raise_input_error_naming_file_and_problem(tmp_path):
    db = make_db()
    with pytest.raises(InputError, match=r"nope\.mat.*not found"):
        read_dbstruct(tmp_path / "nope.mat")

    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"this is not a mat file at all" * 10)
    with pytest.raises(InputError, match=r"garbage\.mat"):
        read_dbstruct(garbage)

    other = tmp_path / "other.mat"
    scipy.io.savemat(other, {"somethingElse": np.ones(3)})
    with pytest.raises(InputError, match=r"other\.mat: no variable 'dbStruct'.*somethingElse"):
        read_dbstruct(other)

    lacking = tmp_path / "lacking.mat"
    scipy.io.savemat(lacking, {"dbStruct": raw_struct(db, FIELDS_10, drop=("utmQ", "numImages"))})
    with pytest.raises(InputError, match=r"lacking\.mat.*lacks.*'utmQ', 'numImages'"):
        read_dbstruct(lacking)

    tokyo_lacking = tmp_path / "tokyo_lacking.mat"
    scipy.io.savemat(
        tokyo_lacking,
        {"dbStruct": raw_struct(make_db(timestamps=True), FIELDS_12, drop=("qTimeStamp",))},
    )
    with pytest.raises(InputError, match=r"tokyo_lacking\.mat.*lacks.*'qTimeStamp'"):
        read_dbstruct(tokyo_lacking)

    counts = tmp_path / "counts.mat"
    scipy.io.savemat(counts, {"dbStruct": raw_struct(db, FIELDS_10, override={"numImages": 99})})
    with pytest.raises(InputError, match=r"counts\.mat: database counts disagree: num=99, 7"):
        read_dbstruct(counts)

    shape = tmp_path / "shape.mat"
    bad_utm = np.zeros((3, db.num_q))
    scipy.io.savemat(shape, {"dbStruct": raw_struct(db, FIELDS_10, override={"utmQ": bad_utm})})
    with pytest.raises(
        InputError, match=r"shape\.mat: field utmQ has shape \(3, 4\), expected 2×N"
    ):
        read_dbstruct(shape)

    # Issue 16: NaN/inf or absurd coordinates used to pass and fail later in a KD-tree.
    for value, name in ((np.nan, "nan"), (np.inf, "inf"), (3e9, "absurd")):
        utm = db.q_utm.T.copy()
        utm[1, 2] = value
        path = tmp_path / f"utm_{name}.mat"
        scipy.io.savemat(path, {"dbStruct": raw_struct(db, FIELDS_10, override={"utmQ": utm})})
        with pytest.raises(InputError, match=rf"utm_{name}\.mat: field utmQ has 1 non-finite or "
                           r"absurd coordinate\(s\) \(first: column 3 = "):  # fmt: skip
            read_dbstruct(path)


def test_writer_rejects_inconsistent_struct_and_writes_nothing(tmp_path):
    db = make_db()
    bad = DbStruct(**{**db.__dict__, "num_q": db.num_q + 1})
    with pytest.raises(InputError, match=r"bad\.mat.*query counts disagree"):
        write_dbstruct(tmp_path / "bad.mat", bad)
    transposed = DbStruct(**{**db.__dict__, "db_utm": db.db_utm.T})
    with pytest.raises(InputError, match=r"bad\.mat.*shape \(2, 7\)"):
        write_dbstruct(tmp_path / "bad.mat", transposed)
    assert list(tmp_path.iterdir()) == []
