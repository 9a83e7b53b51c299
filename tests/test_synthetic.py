"""The synthetic city: determinism, layout, split geometry, capture times and the renderer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import cKDTree

from icsa.data import load_split, read_dbstruct
from icsa.data.synthetic import MANIFEST, CitySettings, generate
from icsa.data.synthetic import writer as synthetic_writer
from icsa.data.synthetic.appearance import Appearance, apply_appearance, encode_jpeg
from icsa.data.synthetic.facade import WINDOW
from icsa.data.synthetic.render import CAM_HEIGHT, HORIZON, Camera, render
from icsa.data.synthetic.world import PITTSBURGH, build_world
from icsa.errors import InputError
from tests.helpers.netvlad_public import netvlad_positional_reader

torch.set_num_threads(1)

TINY = CitySettings(
    image_height=48,
    image_width=64,
    train_db=40,
    train_q=24,
    val_db=20,
    val_q=10,
    test_db=24,
    test_q=12,
    tokyo_train_db=24,
    tokyo_train_q=10,
    tokyo_val_db=16,
    tokyo_val_q=6,
)
SPLITS = {
    ("pitts30k", "train"): (40, 24),
    ("pitts30k", "val"): (20, 10),
    ("pitts30k", "test"): (24, 12),
    ("tokyotm", "train"): (24, 10),
    ("tokyotm", "val"): (16, 6),
}


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "city"
    generate(root, 0, TINY, workers=1, progress=False)
    return root


def test_same_seed_gives_identical_bytes_any_worker_count_other_seed_differs(city, tmp_path):
    again = tmp_path / "again"
    generate(again, 0, TINY, workers=2, progress=False)
    a, b = _files(city), _files(again)
    assert sorted(a) == sorted(b)
    assert any(name.endswith(".mat") for name in a) and any(name.endswith(".jpg") for name in a)
    assert all(a[name] == b[name] for name in a), "same seed must give byte-identical files"
    other = tmp_path / "other"
    generate(other, 1, TINY, workers=1, progress=False)
    c = _files(other)
    mats = [n for n in a if n.endswith(".mat")]
    assert all(a[n] != c[n] for n in mats)
    shared_jpgs = [n for n in a if n.endswith(".jpg") and n in c]
    assert sum(a[n] != c[n] for n in shared_jpgs) > 0.9 * len(shared_jpgs)


def test_layout_is_readable_with_the_right_counts(city):
    for (dataset, split), (n_db, n_q) in SPLITS.items():
        sp = load_split(city / dataset, dataset, split)
        assert (sp.db.num_db, sp.db.num_q) == (n_db, n_q)
        assert len(sp.db_paths) == n_db and len(sp.q_paths) == n_q
        assert sp.db.which_set == split
        assert (sp.db.pos_dist_thr, sp.db.pos_dist_sq_thr) == (25.0, 625.0)
        assert sp.db.non_triv_pos_dist_sq_thr == 100.0
        assert len(set(sp.db.db_images)) == n_db and len(set(sp.db.q_images)) == n_q
        for path in sp.db_paths[:3] + sp.q_paths[:3]:
            with Image.open(path) as img:
                assert img.size == (64, 48) and img.format == "JPEG"
        if dataset == "pitts30k":
            assert sp.db.db_timestamps is None
            assert all(name.startswith("000/") for name in sp.db.db_images)
            assert all(p.parent.parent.name == "queries_real" for p in sp.q_paths)
        else:
            assert sp.db.db_timestamps.shape == (n_db,) and sp.db.q_timestamps.shape == (n_q,)
    assert (city / MANIFEST).is_file()


@pytest.mark.parametrize(
    "dataset,splits", [("pitts30k", ("train", "val", "test")), ("tokyotm", ("train", "val"))]
)
def test_splits_are_disjoint_in_space_and_queries_have_positives(city, dataset, splits):
    loaded = {s: load_split(city / dataset, dataset, s).db for s in splits}
    for s, db in loaded.items():
        tree = cKDTree(db.db_utm)
        d, _ = tree.query(db.q_utm)
        assert np.all(d <= 25.0), "every query has a database image within 25 m"
        if s == "train":
            assert np.all(d <= 10.0), "training queries have non-trivial positives (10 m)"
        for o, other in loaded.items():
            if o != s:
                assert tree.query(other.db_utm)[0].min() > 25.0
                assert tree.query(other.q_utm)[0].min() > 25.0


def test_tokyo_role_is_a_time_machine_whose_queries_are_database_images(city):
    for split in ("train", "val"):
        sp = load_split(city / "tokyotm", "tokyotm", split)
        db = sp.db
        assert np.all(db.db_timestamps > 20000000)  # yyyymmdd integers
        row = {name: i for i, name in enumerate(db.db_images)}
        rows = np.array([row[name] for name in db.q_images])  # every query is a database image
        np.testing.assert_array_equal(db.q_utm, db.db_utm[rows])
        np.testing.assert_array_equal(db.q_timestamps, db.db_timestamps[rows])
        assert all(q == d for q, d in zip(sp.q_paths, [sp.db_paths[i] for i in rows]))
        near = cKDTree(db.db_utm).query_ball_point(db.q_utm, 25.0)
        for i, idx in enumerate(near):
            times = set(db.db_timestamps[idx])
            # Its own capture time is there (the same-time twin), and at least one other.
            assert db.q_timestamps[i] in times and len(times) >= 2
        # One position per capture; the captures of one place are apart, yet within 2 x 3 m.
        place = np.array([name.split("/")[-1].split("_")[0] for name in db.db_images])
        for pid in np.unique(place):
            xy = np.unique(db.db_utm[place == pid], axis=0)
            years = np.unique(db.db_timestamps[place == pid])
            assert len(xy) == len(years) >= 1
            gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
            assert gaps.max() <= 6.0 and (len(xy) == 1 or gaps[gaps > 0].min() > 0)


def test_tokyo_years_change_the_look_of_a_place(tmp_path):
    """The same place and heading in two capture years differs (repaint, signs, season), but
    less than two different places do."""
    settings = CitySettings(**{**TINY.to_dict(), "tokyo_val_db": 24, "tokyo_val_q": 4})
    generate(tmp_path / "c", 3, settings, workers=1, progress=False)
    sp = load_split(tmp_path / "c" / "tokyotm", "tokyotm", "val")

    # Ordered place, yaw, year (names db/<year>/<place>_yaw<k>.jpg; the .mat sorts otherwise).
    def place_yaw_year(path):
        place, yaw = path.stem.split("_yaw")
        return int(place), int(yaw), path.parent.name

    paths = sorted(sp.db_paths, key=place_yaw_year)
    images = [np.asarray(Image.open(p), dtype=np.float32) for p in paths]
    t = settings.tokyo_capture_times
    same_place = [np.abs(images[k * t] - images[k * t + 1]).mean() for k in range(4)]
    other_place = [np.abs(images[k * t] - images[12 + k * t]).mean() for k in range(4)]
    assert min(same_place) > 2.0, "another year must look different"
    assert np.mean(same_place) < np.mean(other_place)


def test_every_mat_file_reads_with_the_public_positional_reader(city):
    mats = sorted(city.rglob("*.mat"))
    assert len(mats) == len(SPLITS)
    for path in mats:
        ref = netvlad_positional_reader(path)
        ours = read_dbstruct(path)
        assert type(ref["numDb"]) is int and type(ref["numQ"]) is int
        assert (ref["numDb"], ref["numQ"]) == (ours.num_db, ours.num_q)
        assert ref["dbImage"] == ours.db_images and ref["qImage"] == ours.q_images
        np.testing.assert_array_equal(ref["utmDb"], ours.db_utm)
        if ours.has_timestamps:
            np.testing.assert_array_equal(ref["dbTimeStamp"], ours.db_timestamps)
            np.testing.assert_array_equal(ref["qTimeStamp"], ours.q_timestamps)


def test_existing_foreign_folder_is_refused_and_a_failure_leaves_nothing(tmp_path, monkeypatch):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not a synthetic city"):
        generate(foreign, 0, TINY, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("icsa.data.synthetic.write_dbstruct", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path / "new", 0, TINY, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "no half-written output"


def test_settings_are_validated():
    with pytest.raises(InputError, match="train_db"):
        CitySettings(train_db=0)
    with pytest.raises(InputError, match="split_gap"):
        CitySettings(split_gap=20.0)
    with pytest.raises(InputError, match="night_fraction"):
        CitySettings(night_fraction=0.8, dusk_fraction=0.5)
    with pytest.raises(InputError, match="unknown keys"):
        CitySettings.from_dict({"trian_db": 5})
    with pytest.raises(InputError, match="tokyo_capture_times"):
        CitySettings(tokyo_capture_times=1)
    with pytest.raises(InputError, match="tokyo_val_q.*images of its database"):
        CitySettings(tokyo_val_db=4, tokyo_val_q=5)
    assert CitySettings.from_dict(TINY.to_dict()) == TINY


# --- renderer ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world():
    return build_world(PITTSBURGH, 6, 5, 4, 0.1, 0.3, np.random.default_rng(0))


def _ray_reference(world, x, y, angle):
    """Brute force: distance to the nearest front-facing segment along one ray."""
    d = np.array([np.cos(angle), np.sin(angle)])
    best = np.inf
    for p0, p1, n in zip(world.seg_p0, world.seg_p1, world.seg_normal):
        if np.dot(np.array([x, y]) - p0, n) <= 0:
            continue
        m = np.array([d, p0 - p1]).T
        if abs(np.linalg.det(m)) < 1e-12:
            continue
        t, s = np.linalg.solve(m, p0 - np.array([x, y]))
        if t > 0.05 and 0 <= s <= 1:
            best = min(best, t)
    return best


def test_ray_casting_matches_brute_force_and_perspective(world):
    px, py = PITTSBURGH.block_pitch
    h, w = 60, 80
    for cam in (
        Camera(2 * px + 13.0, 2 * py + 0.7, 80.0, 70.0),
        Camera(3 * px + 0.3, py + 21.0, 200.0, 60.0),
    ):
        frame = render(world, cam, h, w)
        f = (w / 2) / np.tan(np.radians(cam.fov_deg) / 2)
        yh = HORIZON * h
        row = int(yh)  # the horizon row always shows the nearest wall (it spans the horizon)
        for col in (0, 17, 40, 79):
            xc = col + 0.5 - w / 2
            ang = np.radians(cam.heading_deg) - np.arctan(xc / f)
            t = _ray_reference(world, cam.x, cam.y, ang)
            z = t * f / np.hypot(f, xc)
            assert frame.depth[row, col] == pytest.approx(z, rel=1e-4)
            # Perspective: the wall's foot is f * camera height / z below the horizon.
            foot = np.flatnonzero(frame.depth[:, col] != frame.depth[row, col])
            first_below = foot[foot > row].min() if (foot > row).any() else h
            expected = yh + f * CAM_HEIGHT / z
            assert abs(first_below - np.ceil(expected - 0.5)) <= 1


def test_nearby_poses_look_alike_and_distant_ones_differ(world):
    px, py = PITTSBURGH.block_pitch
    rng = np.random.default_rng(1)
    wins = 0
    for _ in range(10):
        x, y = rng.uniform(1.2 * px, 4 * px), 2 * py + rng.uniform(-2, 2)
        heading = rng.choice([0.0, 90.0, 180.0, 270.0])
        a = render(world, Camera(x, y, heading, 70.0), 48, 64).rgb
        near = render(world, Camera(x + 0.5, y, heading, 70.0), 48, 64).rgb
        far_x = x + 200.0 if x + 200.0 < 5 * px else x - 200.0
        far = render(world, Camera(far_x, y + py, heading, 70.0), 48, 64).rgb
        wins += np.abs(a - near).mean() < np.abs(a - far).mean()
    assert wins == 10


def test_night_darkens_and_lights_windows_and_jpeg_is_deterministic(world):
    px, py = PITTSBURGH.block_pitch
    cam = Camera(2 * px + 20.0, 2 * py, 0.0, 70.0)
    day_app = Appearance("day", 1.0, 1.0, (1.0, 1.0, 1.0), None, 0.0, 0.0, 0.0, 0, 90, 0)
    night_app = Appearance("night", 0.13, 1.0, (1.0, 1.0, 1.0), None, 0.5, 0.0, 0.0, 0, 90, 0)
    day = apply_appearance(render(world, cam, 48, 64), day_app, 70.0)
    frame = render(world, cam, 48, 64)
    night = apply_appearance(frame, night_app, 70.0)
    assert night.mean() < 0.4 * day.mean()
    windows = frame.cls == WINDOW
    assert windows.any() and night[windows].max() > 150, "some windows are lit"
    assert encode_jpeg(day, 80) == encode_jpeg(day.copy(), 80)
    assert b"Exif" not in encode_jpeg(day, 80)


def test_render_plan_is_independent_of_worker_state(world):
    """A job's bytes depend only on the job (what makes multiprocessing byte-identical)."""
    job = synthetic_writer.Job(
        "x.jpg",
        0,
        Camera(200.0, 112.0, 30.0, 65.0),
        Appearance("dusk", 0.7, 1.1, (1.0, 0.9, 1.1), 10.0, 0.4, 0.8, 0.02, 3, 60, 7),
    )
    first = synthetic_writer.render_job(job, [world], 48, 64)
    render(world, Camera(10.0, 10.0, 0.0, 90.0), 48, 64)  # unrelated work in between
    assert synthetic_writer.render_job(job, [world], 48, 64) == first
