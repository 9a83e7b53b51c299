"""Ground truth as database index lists and Nordland's frame tolerance: evaluate_split under each
convention ranks and counts exactly as a brute-force numpy ranking with the rule by hand, the
lists round-trip on disk, and the UTM policies are untouched."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from icsa.cli import main
from icsa.data import load_split
from icsa.data.benchmark import BenchmarkName
from icsa.data.ground_truth import (
    frame_positives,
    read_object_lists,
    read_positives,
    write_positives,
)
from icsa.errors import InputError
from icsa.evaluate.metrics import evaluate_split
from icsa.evaluate.policy import POLICIES, get_policy, policy_for

NS = (1, 2, 5, 10)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force_ranks(db: np.ndarray, q: np.ndarray, lists: list[set[int]], k: int) -> np.ndarray:
    """Rank of the first of the k nearest (float64, full sort) that is in the query's list."""
    dist = ((q.astype(np.float64)[:, None] - db.astype(np.float64)[None]) ** 2).sum(-1)
    ranks = []
    for i in range(len(q)):
        top = list(np.argsort(dist[i], kind="stable")[:k])
        hits = [r for r, j in enumerate(top) if j in lists[i]]
        ranks.append(hits[0] if hits else -1)
    return np.array(ranks)


def recalls_by_hand(ranks: np.ndarray) -> dict[str, float]:
    return {str(n): float(np.mean((ranks >= 0) & (ranks < n))) for n in NS}


def write_benchmark(root, db_names: list[BenchmarkName], q_names: list[BenchmarkName]):
    """Empty image files under images/test/ (names are all a split load reads)."""
    for folder, names in (("database", db_names), ("queries", q_names)):
        (root / "images" / "test" / folder).mkdir(parents=True)
        for n in names:
            (root / "images" / "test" / folder / n.file_name()).touch()
    return load_split(root, "sped", "test", "benchmark")


def test_index_lists_rank_as_brute_force_and_replace_the_radius(tmp_path):
    rng = np.random.default_rng(3)
    num_db, num_q = 40, 15
    # All positions 1 km apart: under the 25 m radius no query has a positive.
    split = write_benchmark(
        tmp_path,
        [BenchmarkName(1000.0 * i, 0.0) for i in range(num_db)],
        [BenchmarkName(1000.0 * i + 500, 5e5) for i in range(num_q)],
    )
    db = unit(rng.standard_normal((num_db, 8)))
    owner = rng.integers(0, num_db, num_q)
    q = unit(db[owner] + 0.7 * rng.standard_normal((num_q, 8)))
    lists = [sorted({int(o), int(rng.integers(num_db))}) for o in owner]
    lists[4] = []  # a query without any positive: a miss at every N
    write_positives(tmp_path / "images" / "test" / "positives.npz", lists, num_db)
    np.save(tmp_path / "db.npy", db)
    np.save(tmp_path / "q.npy", q)
    split = load_split(tmp_path, "sped", "test", "benchmark")
    assert [p.tolist() for p in split.positives] == lists
    assert policy_for(split.dataset, split=split).name == "index-lists"  # the split's lists
    metrics, perquery = evaluate_split(split, tmp_path / "db.npy", tmp_path / "q.npy", "x", ns=NS)
    ranks = brute_force_ranks(db, q, [set(x) for x in lists], max(NS))
    np.testing.assert_array_equal(perquery["first_hit_rank"], ranks)
    assert metrics["recalls"] == recalls_by_hand(ranks) and metrics["recalls"]["10"] > 0.5
    assert metrics["ground_truth"] == "index-lists" and metrics["queries_without_positive"] == 1
    # Named explicitly, the radius still applies (and finds nothing on these positions).
    plain, _ = evaluate_split(split, tmp_path / "db.npy", tmp_path / "q.npy", "x", ns=NS,
                              policy=get_policy("plain"))  # fmt: skip
    assert plain["recalls"]["10"] == 0.0 and "ground_truth" not in plain


def test_index_lists_policy_needs_lists(tmp_path):
    split = write_benchmark(tmp_path, [BenchmarkName(0.0, 0.0)], [BenchmarkName(0.0, 1.0)])
    assert split.positives is None and policy_for("sped", split=split).name == "plain"
    with pytest.raises(InputError, match="carries no positive lists.*--policy plain"):
        get_policy("index-lists").positives(split)


def test_positives_file_round_trips_from_a_reference_object_array(tmp_path):
    lists = [np.array([3, 1]), np.array([], dtype=int), np.array([0, 2, 2])]
    ref = np.empty(3, dtype=object)
    ref[:] = lists
    np.save(tmp_path / "gt.npy", ref, allow_pickle=True)  # gsv-cities' *_gt.npy form
    write_positives(tmp_path / "p.npz", read_object_lists(tmp_path / "gt.npy"), num_db=4)
    back = read_positives(tmp_path / "p.npz", num_q=3, num_db=4)
    assert [b.tolist() for b in back] == [[1, 3], [], [0, 2]]  # sorted, unique
    with pytest.raises(InputError, match="num_db = 4, expected 5"):
        read_positives(tmp_path / "p.npz", num_q=3, num_db=5)
    with pytest.raises(InputError, match="expected 3 non-decreasing"):
        read_positives(tmp_path / "p.npz", num_q=2, num_db=4)
    with pytest.raises(InputError, match="database index 4, expected indices in \\[0, 4\\)"):
        write_positives(tmp_path / "bad.npz", [[4]], num_db=4)


def test_prepare_positives_maps_a_reference_by_file_name(tmp_path, capsys):
    rng = np.random.default_rng(9)
    split = write_benchmark(
        tmp_path,
        [BenchmarkName(float(i), 0.0, note=f"d{i}") for i in range(12)],
        [BenchmarkName(float(i), 9.0, note=f"q{i}") for i in range(5)],
    )
    # The reference lists its images in its own order, under its own folders.
    ref_db = [f"ref/{split.db.db_images[i]}" for i in rng.permutation(12)]
    ref_q = [f"query/{split.db.q_images[i]}" for i in rng.permutation(5)]
    gt = np.empty(5, dtype=object)
    gt[:] = [rng.choice(12, 2, replace=False) for _ in range(5)]
    for name, arr in (("gt", gt), ("db", np.array(ref_db)), ("q", np.array(ref_q))):
        np.save(tmp_path / f"{name}.npy", arr, allow_pickle=name == "gt")
    argv = ["prepare", "positives", "--root", str(tmp_path), "--dataset", "sped", "--split",
            "test", "--gt", str(tmp_path / "gt.npy")]  # fmt: skip
    names = ["--db-names", str(tmp_path / "db.npy"), "--q-names", str(tmp_path / "q.npy")]
    assert main([*argv, *names]) == 0
    loaded = load_split(tmp_path, "sped", "test", "benchmark").positives
    for r, q_name in enumerate(ref_q):  # the same files, whatever the order
        ours = split.db.q_images.index(q_name.split("/", 1)[1])
        expected = sorted(ref_db[j].split("/", 1)[1] for j in gt[r])
        assert sorted(split.db.db_images[j] for j in loaded[ours]) == expected
    # Without name lists the rows must already be the split's: 5 lists for 5 queries.
    assert main(argv) == 0
    assert [p.tolist() for p in load_split(tmp_path, "sped", "test", "benchmark").positives] == [
        sorted(x.tolist()) for x in gt
    ]
    np.save(tmp_path / "q.npy", np.array(ref_q[:4] + ["query/elsewhere.jpg"]))
    assert main([*argv, *names]) != 0
    assert "1 reference names are not in the split" in capsys.readouterr().err


def test_frame_positives_at_the_edges():
    frames = np.arange(30)
    for k in (1, 10):
        pos = frame_positives(frames, frames, k)
        assert pos[0].tolist() == list(range(0, k + 1))  # the first frame: only later ones
        assert pos[29].tolist() == list(range(29 - k, 30))  # the last frame: only earlier ones
        assert pos[15].tolist() == list(range(15 - k, 16 + k))
    # Database rows in any order (names sort as text): indices, not frame numbers, come back.
    shuffled = np.array([5, 0, 3, 1, 4, 2])
    assert frame_positives(shuffled, np.array([0]), 1)[0].tolist() == [1, 3]
    with pytest.raises(InputError, match="frame tolerance = -1"):
        frame_positives(frames, frames, -1)


def nordland(root, num: int = 30, query_frames=None):
    """A Nordland in gmberton/VPR-datasets-downloader's naming: frame number in pano_id, a dummy
    northing of 25/10.5 m per frame rounded to 0.1 m (so ±10 frames lie within 25 m)."""
    query_frames = range(num) if query_frames is None else query_frames
    step = 25 / 10.5

    def name(f: int) -> BenchmarkName:
        return BenchmarkName(0.0, round(f * step, 1), pano_id=str(f))

    split = write_benchmark(root, [name(f) for f in range(num)], [name(f) for f in query_frames])
    db_frames = np.array([int(n.split("@")[7]) for n in split.db.db_images])
    q_frames = np.array([int(n.split("@")[7]) for n in split.db.q_images])
    assert not np.array_equal(db_frames, np.sort(db_frames))  # sorted names are not frame order
    return split, db_frames, q_frames


@pytest.mark.parametrize("query_frames", [None, range(0, 30, 3)], ids=["all", "every-3rd"])
def test_nordland_tolerances_rank_as_brute_force(tmp_path, query_frames):
    split, db_frames, q_frames = nordland(tmp_path, 30, query_frames)
    rng = np.random.default_rng(5)
    walk = np.cumsum(rng.standard_normal((30, 16)), axis=0)  # nearby frames look alike
    db = unit(walk[db_frames] + 0.3 * rng.standard_normal((len(db_frames), 16)))
    q = unit(walk[q_frames] + 2.0 * rng.standard_normal((len(q_frames), 16)))
    np.save(tmp_path / "db.npy", db)
    np.save(tmp_path / "q.npy", q)
    assert policy_for("nordland", split=split).name == "plain"  # never a default
    results = {}
    for k in (1, 10):
        metrics, perquery = evaluate_split(split, tmp_path / "db.npy", tmp_path / "q.npy", "x",
                                           ns=NS, policy=get_policy(f"nordland{k}"))  # fmt: skip
        lists = [{j for j in range(len(db_frames)) if abs(db_frames[j] - f) <= k} for f in q_frames]
        ranks = brute_force_ranks(db, q, lists, max(NS))
        np.testing.assert_array_equal(perquery["first_hit_rank"], ranks)
        assert metrics["recalls"] == recalls_by_hand(ranks)
        assert (metrics["ground_truth"], metrics["frame_tolerance"]) == ("frames", k)
        results[k] = perquery["first_hit_rank"]
    assert not np.array_equal(results[1], results[10])  # the tolerance matters on these data
    # The downloader's dummy UTM under the plain 25 m radius is exactly ±10 frames.
    _, plain = evaluate_split(split, tmp_path / "db.npy", tmp_path / "q.npy", "x", ns=NS,
                              policy=get_policy("plain"))  # fmt: skip
    np.testing.assert_array_equal(plain["first_hit_rank"], results[10])


def test_frame_policies_need_frame_numbers(tmp_path):
    split = write_benchmark(tmp_path, [BenchmarkName(0.0, 0.0)], [BenchmarkName(0.0, 1.0)])
    with pytest.raises(InputError, match="pano_id field = '', expected the frame number"):
        get_policy("nordland1").positives(split)


def test_utm_policies_are_unchanged():
    for name in ("plain", "time-machine", "panoramas"):
        policy = POLICIES[name]
        assert policy.ground_truth == "utm" and policy.frame_tolerance is None
        assert set(policy.metrics_fields()) == {"time_rule", "panorama_cutouts"}
    assert policy_for("msls").name == "plain" and policy_for("nordland").name == "plain"
