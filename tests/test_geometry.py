"""Place geometry against brute force, with points exactly at and just beyond the radius."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icsa.data import (
    DbStruct,
    different_time,
    eval_positives,
    positives_within,
    potential_negatives,
    training_positives,
)
from icsa.errors import InputError

torch.set_num_threads(1)


def brute_force(db: np.ndarray, q: np.ndarray, radius: float) -> list[np.ndarray]:
    d2 = ((q[:, None, :] - db[None, :, :]) ** 2).sum(-1)  # [M, N]
    return [np.flatnonzero(row <= radius * radius) for row in d2]


def boundary_case(origin: tuple[float, float], radius: float = 25.0):
    """Queries with database points exactly at ``radius`` (scaled 3-4-5 and 7-24-25 triangles,
    axis-aligned) and the same directions pushed 1e-9 m beyond."""
    ox, oy = origin
    q = np.array([[ox, oy], [ox + 100.0, oy - 50.0]])
    s = radius / 25.0
    at = [(15 * s, 20 * s), (-20 * s, 15 * s), (7 * s, -24 * s), (-radius, 0.0), (0.0, radius)]
    beyond = [(radius + 1e-9, 0.0), (0.0, -(radius + 1e-9)), (15 * s + 1e-9, 20 * s)]
    db, exact, outside = [], [], []
    for qx, qy in q:
        for dx, dy in at:
            exact.append(len(db))
            db.append((qx + dx, qy + dy))
        for dx, dy in beyond:
            outside.append(len(db))
            db.append((qx + dx, qy + dy))
    return np.array(db), q, exact, outside


@pytest.mark.parametrize("origin", [(0.0, 0.0), (585123.0, 4477456.0)], ids=["local", "utm"])
def test_exactly_at_radius_in_and_beyond_out(origin):
    db, q, exact, outside = boundary_case(origin)
    # the "beyond" points really are beyond in float64 (else the test would prove nothing)
    for i in outside:
        d = db[i] - q[np.argmin(((q - db[i]) ** 2).sum(1))]
        assert d @ d > 625.0
    found = positives_within(db, q, 25.0)
    flat = set(np.concatenate(found).tolist())
    assert set(exact) <= flat
    assert not flat & set(outside)
    for got, ref in zip(found, brute_force(db, q, 25.0)):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("seed", range(4))
def test_equals_brute_force_on_random_coordinates(seed):
    rng = np.random.default_rng(seed)
    # integer grid points make many exact-radius ties; uniform points cover the general case
    grid_db = rng.integers(0, 120, size=(400, 2)).astype(float)
    grid_q = rng.integers(0, 120, size=(150, 2)).astype(float)
    uni_db = rng.uniform(0, 300, size=(500, 2)) + [585000.0, 4477000.0]
    uni_q = rng.uniform(0, 300, size=(120, 2)) + [585000.0, 4477000.0]
    for db, q in ((grid_db, grid_q), (uni_db, uni_q)):
        for radius in (10.0, 25.0, 0.0):
            got = positives_within(db, q, radius, workers=1)
            ref = brute_force(db, q, radius)
            assert len(got) == len(q)
            for g, r in zip(got, ref):
                assert g.dtype == np.int64
                np.testing.assert_array_equal(g, r)  # same set, sorted
    ties = brute_force(grid_db, grid_q, 25.0)
    d2 = ((grid_q[:, None] - grid_db[None]) ** 2).sum(-1)
    assert (d2 == 625.0).sum() > 0 and sum(map(len, ties)) > 0  # ties actually occurred


def test_empty_and_bad_inputs():
    assert positives_within(np.zeros((0, 2)), np.zeros((3, 2)), 25.0)[2].size == 0
    assert positives_within(np.zeros((3, 2)), np.zeros((0, 2)), 25.0) == []
    with pytest.raises(InputError, match="db_utm"):
        positives_within(np.zeros((3, 3)), np.zeros((1, 2)), 25.0)
    with pytest.raises(InputError, match="radius"):
        positives_within(np.zeros((3, 2)), np.zeros((1, 2)), -1.0)


def make_struct(rng, timestamps: bool) -> DbStruct:
    db_utm = rng.uniform(0, 150, size=(300, 2))
    q_utm = rng.uniform(0, 150, size=(60, 2))
    return DbStruct(
        "train", [f"d{i}" for i in range(300)], db_utm, [f"q{i}" for i in range(60)], q_utm,
        300, 60, 25.0, 625.0, 100.0,
        rng.integers(0, 4, 300).astype(float) if timestamps else None,
        rng.integers(0, 4, 60).astype(float) if timestamps else None,
    )  # fmt: skip


def test_training_positives_eval_positives_and_time_rule():
    rng = np.random.default_rng(7)
    plain = make_struct(rng, timestamps=False)
    for got, ref in zip(training_positives(plain), brute_force(plain.db_utm, plain.q_utm, 10.0)):
        np.testing.assert_array_equal(got, ref)
    tm = make_struct(rng, timestamps=True)
    d2 = ((tm.q_utm[:, None] - tm.db_utm[None]) ** 2).sum(-1)
    other_time = tm.q_timestamps[:, None] != tm.db_timestamps[None, :]
    for radius, fn in ((10.0, training_positives), (25.0, eval_positives)):
        ref = [np.flatnonzero(row) for row in (d2 <= radius**2) & other_time]
        for got, r in zip(fn(tm), ref):
            np.testing.assert_array_equal(got, r)
        without = fn(tm, time_rule=False)
        assert sum(map(len, without)) > sum(map(len, ref))  # the rule removed something
    filtered = different_time(without, tm.db_timestamps, tm.q_timestamps)
    for i, pos in enumerate(filtered):
        assert np.all(tm.db_timestamps[pos] != tm.q_timestamps[i])
    with pytest.raises(InputError, match="q_timestamps"):
        different_time(without, tm.db_timestamps, tm.q_timestamps[:5])


def test_potential_negatives_are_the_complement_of_the_positives():
    rng = np.random.default_rng(1)
    db = rng.uniform(0, 200, size=(250, 2))
    q = rng.uniform(0, 200, size=(40, 2))
    near = positives_within(db, q, 25.0)
    negs = potential_negatives(db, q, 25.0)
    d2 = ((q[:, None] - db[None]) ** 2).sum(-1)
    for i, (p, n) in enumerate(zip(near, negs)):
        np.testing.assert_array_equal(n, np.flatnonzero(d2[i] > 625.0))
        assert len(np.intersect1d(p, n)) == 0 and len(p) + len(n) == len(db)


def test_training_positives_accept_a_loaded_split(tmp_path):
    from icsa.data import load_split, write_dbstruct

    rng = np.random.default_rng(2)
    db = make_struct(rng, timestamps=True)
    write_dbstruct(tmp_path / "datasets" / "tokyoTM_val.mat", db)
    split = load_split(tmp_path, "tokyotm", "val")
    for a, b in zip(training_positives(split), training_positives(db)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(eval_positives(split), eval_positives(db)):
        np.testing.assert_array_equal(a, b)
