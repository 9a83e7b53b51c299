"""Evaluation policies: each dataset gets the rule its protocol requires, and evaluate_split
under a policy ranks exactly as a brute-force numpy ranking with the rule applied by hand."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from icsa.data import DATASETS, DbStruct, load_split, write_dbstruct
from icsa.errors import InputError
from icsa.evaluate.metrics import evaluate_split
from icsa.evaluate.policy import (
    DATASET_POLICIES,
    DEFAULT_POLICY,
    POLICIES,
    get_policy,
    policy_for,
)

NS = (1, 2, 5, 10)
THRESHOLD = 25.0


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(db, q, db_utm, q_utm, k, db_times=None, q_times=None, cutouts=None):
    """Per query: the top-k database rows after the rule, and the rank of the first positive
    (−1 if none); by a full float64 distance matrix and loops."""
    dist = ((q.astype(np.float64)[:, None] - db.astype(np.float64)[None]) ** 2).sum(-1)
    tops, ranks = [], []
    for i in range(len(q)):
        ranking = list(np.argsort(dist[i], kind="stable"))
        if db_times is not None:  # TokyoTM: same-time database images leave the ranking
            ranking = [j for j in ranking if db_times[j] != q_times[i]]
        if cutouts is not None:  # Tokyo 24/7: a panorama at the rank of its best view
            seen: set[int] = set()
            ranking = [j for j in ranking if not (j // cutouts in seen or seen.add(j // cutouts))]
        top = ranking[:k]
        near = np.hypot(*(db_utm[top] - q_utm[i]).T) <= THRESHOLD
        if db_times is not None:
            near &= db_times[top] != q_times[i]
        tops.append(top + [-1] * (k - len(top)))
        ranks.append(int(np.argmax(near)) if near.any() else -1)
    return np.array(tops), np.array(ranks)


def write_split(folder, dataset, mat, split, db, q, db_utm, q_utm, times=(None, None)):
    num_db, num_q = len(db), len(q)
    write_dbstruct(folder / "datasets" / mat, DbStruct(
        split, [f"d{i}.png" for i in range(num_db)], db_utm, [f"q{i}.png" for i in range(num_q)],
        q_utm, num_db, num_q, THRESHOLD, THRESHOLD**2, 100.0, *times,
    ))  # fmt: skip
    np.save(folder / "db.npy", db)
    np.save(folder / "q.npy", q)
    return load_split(folder, dataset, split)


def tokyotm_like(folder):
    """A time machine: 16 places × 3 capture years, a few metres apart within a place; the
    queries are database images (so each one's same-time twin would rank first)."""
    rng = np.random.default_rng(11)
    places, years = 16, 3
    base = 3.0 * rng.standard_normal((places, 8))
    db = unit(np.repeat(base, years, axis=0) + rng.standard_normal((places * years, 8)))
    db_utm = np.repeat(rng.uniform(0, 2000, (places, 2)), years, axis=0)
    db_utm[:, 0] += np.tile(np.arange(years) * 4.0, places)
    db_times = np.tile(np.array([2008.0, 2011.0, 2014.0]), places)
    rows = rng.choice(len(db), 12, replace=False)
    split = write_split(folder, "tokyotm", "tokyoTM_val.mat", "val", db, db[rows], db_utm,
                        db_utm[rows], (db_times, db_times[rows]))  # fmt: skip
    return split, (db, db[rows], db_utm, db_utm[rows]), {"db_times": db_times,
                                                         "q_times": db_times[rows]}  # fmt: skip


def tokyo247_like(folder):
    """Panoramas of 12 consecutive views at one position; queries near some panoramas."""
    rng = np.random.default_rng(12)
    panoramas = 6
    db_utm = np.repeat(rng.uniform(0, 1000, (panoramas, 2)), 12, axis=0)
    db = unit(np.repeat(rng.standard_normal((panoramas, 8)), 12, axis=0)
              + 0.8 * rng.standard_normal((panoramas * 12, 8)))  # fmt: skip
    owner = rng.integers(0, panoramas * 12, 10)
    q = unit(db[owner] + 0.5 * rng.standard_normal((10, 8)))
    q_utm = db_utm[owner] + rng.uniform(-15, 15, (10, 2))
    split = write_split(folder, "tokyo247", "tokyo247.mat", "test", db, q, db_utm, q_utm)
    return split, (db, q, db_utm, q_utm), {"cutouts": 12}


@pytest.mark.parametrize("make", [tokyotm_like, tokyo247_like], ids=["tokyotm", "tokyo247"])
def test_policy_ranking_equals_a_brute_force_ranking_with_the_rule(make, tmp_path):
    split, arrays, rule = make(tmp_path)
    policy = policy_for(split.dataset)
    metrics, perquery = evaluate_split(split, tmp_path / "db.npy", tmp_path / "q.npy", "x",
                                       ns=NS, policy=policy)  # fmt: skip
    tops, ranks = brute_force(*arrays, max(NS), **rule)
    np.testing.assert_array_equal(perquery["indices"], tops)
    np.testing.assert_array_equal(perquery["first_hit_rank"], ranks)
    expected = {str(n): float(np.mean((ranks >= 0) & (ranks < n))) for n in NS}
    assert metrics["recalls"] == expected
    assert metrics["time_rule"] == ("drop-same-time" if "q_times" in rule else None)
    assert metrics["panorama_cutouts"] == rule.get("cutouts")
    # The rule matters on these data: the plain ranking differs.
    plain_tops, _ = brute_force(*arrays, max(NS))
    assert not np.array_equal(plain_tops, tops)
    _, plain = evaluate_split(split, tmp_path / "db.npy", tmp_path / "q.npy", "x", ns=NS,
                              policy=get_policy("plain"))  # fmt: skip
    np.testing.assert_array_equal(plain["indices"], plain_tops)


def test_each_dataset_gets_the_policy_its_protocol_requires():
    assert set(DATASET_POLICIES) == set(DATASETS)  # a new NetVLAD-layout dataset needs a decision
    for name in ("pitts30k", "pitts250k"):
        assert policy_for(name) == POLICIES["plain"]
    tm, t247, plain = policy_for("tokyotm"), policy_for("tokyo247"), POLICIES["plain"]
    assert tm.drop_same_time and tm.panorama_cutouts is None
    assert t247.panorama_cutouts == 12 and not t247.drop_same_time
    assert not plain.drop_same_time and plain.panorama_cutouts is None
    # Any other name (benchmark layout): the plain protocol, unless a policy is named.
    assert DEFAULT_POLICY == "plain" and policy_for("msls") == plain
    assert policy_for("msls", "time-machine") == tm
    assert policy_for("tokyo247", "plain") == plain
    with pytest.raises(InputError, match=r"policy = 'tokyo' is unknown; expected one of \['plain'"):
        get_policy("tokyo")


def test_time_machine_policy_needs_capture_times(tmp_path):
    split, *_ = tokyo247_like(tmp_path)  # no capture times
    with pytest.raises(InputError, match="without capture times.*--policy plain"):
        evaluate_split(split, tmp_path / "db.npy", tmp_path / "q.npy", "x",
                       policy=get_policy("time-machine"))  # fmt: skip
