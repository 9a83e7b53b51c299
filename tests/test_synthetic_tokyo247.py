"""The synthetic city's Tokyo 24/7 role (icsa/data/synthetic/tokyo247.py)."""

from __future__ import annotations

import numpy as np
import pytest

from icsa.data import load_split
from icsa.data.synthetic import generate
from icsa.data.synthetic.settings import CitySettings
from icsa.data.synthetic.tokyo247 import VIEWS
from icsa.errors import InputError
from icsa.evaluate.recall import TOKYO247_CUTOUTS, panorama_groups

SMALL = dict(image_height=24, image_width=32, train_db=8, train_q=2, val_db=8, val_q=2,
             test_db=8, test_q=2, tokyo_train_db=4, tokyo_train_q=2, tokyo_val_db=4,
             tokyo_val_q=2)  # fmt: skip


def test_role_has_the_tokyo247_layout_and_panorama_rows(tmp_path) -> None:
    assert VIEWS == TOKYO247_CUTOUTS
    generate(tmp_path / "c", 0, CitySettings(**SMALL, tokyo247_db=30, tokyo247_q=6), progress=False)
    split = load_split(tmp_path / "c" / "tokyo247", "tokyo247", "test")
    assert (split.db.num_db, split.db.num_q) == (36, 6)  # whole panoramas: 30 → 3 × 12
    assert all(p.is_file() for p in [*split.db_paths, *split.q_paths])
    assert all(p.parent.parent.name == "images" for p in split.db_paths)
    assert all(p.parent.name == "query" for p in split.q_paths)
    utm = np.asarray(split.db.db_utm).T  # [2, N]
    groups = panorama_groups(split.db.num_db)
    for g in np.unique(groups):  # 12 consecutive rows: one place, 12 views
        views = utm[:, groups == g]
        assert views.shape[1] == VIEWS and np.ptp(views, axis=1).max() == 0.0
    assert len({tuple(utm[:, groups == g][:, 0]) for g in np.unique(groups)}) == 3


def test_other_roles_are_unchanged_by_it(tmp_path) -> None:
    generate(tmp_path / "a", 0, CitySettings(**SMALL), progress=False)
    generate(tmp_path / "b", 0, CitySettings(**SMALL, tokyo247_db=12, tokyo247_q=3), progress=False)
    for role in ("pitts30k", "tokyotm"):
        files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / role).rglob("*")
                       if p.is_file())  # fmt: skip
        assert files
        for rel in files:
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # Off, the role leaves the manifest as it was before the role existed.
    assert "tokyo247_db" not in (tmp_path / "a" / "synthetic.json").read_text()


def test_role_settings_are_checked() -> None:
    with pytest.raises(InputError, match="tokyo247_db/tokyo247_q: got 12/0"):
        CitySettings(tokyo247_db=12)
    with pytest.raises(InputError, match="netvlad layout only"):
        generate("/nonexistent/x", 0, CitySettings(**SMALL, tokyo247_db=12, tokyo247_q=2),
                 layout="benchmark", progress=False)  # fmt: skip


def test_a_synthetic_tokyo247_dataset_needs_the_role(tmp_path) -> None:
    from icsa.pipeline import check

    config = {
        "dataset": "pitts30k",
        "datasets": {n: {"root": f"data/synthetic/{n}"} for n in ("pitts30k", "tokyo247")},
        "synthetic": {"out": "data/synthetic", "settings": {}},
        "evalsets": {},
        "tables": {},
        "plugins": [],
    }
    with pytest.raises(
        InputError, match=r"synthetic.settings.tokyo247_db = 0; expected a positive"
    ):
        check(config)
