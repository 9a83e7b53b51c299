"""Layouts, load_split and the image datasets, on tiny folders built with PIL in tmp_path."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from icsa.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDataset,
    load_split,
    split_datasets,
)
from icsa.errors import InputError
from tests.helpers.datasets import colour, make_dataset

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("dataset", "split", "db_dir", "q_dir"),
    [
        ("pitts30k", "test", ".", "queries_real"),
        ("pitts250k", "val", ".", "queries_real"),
        ("tokyotm", "train", "images", "images"),
        ("tokyo247", "test", "images", "query"),
    ],
)
def test_load_split_in_each_layout(tmp_path, dataset, split, db_dir, q_dir):
    db = make_dataset(tmp_path, dataset, {split: (5, 3)})[split]
    sp = load_split(tmp_path, dataset, split)
    assert repr(sp) == f"< {dataset}-{split} - #q: 3; #db: 5 >"
    assert sp.name == f"{dataset}-{split}" and sp.db.db_images == db.db_images
    assert sp.db_paths == [tmp_path / db_dir / n for n in db.db_images]
    assert sp.q_paths == [tmp_path / q_dir / n for n in db.q_images]
    assert all(p.is_file() for p in (*sp.db_paths, *sp.q_paths))
    assert (sp.db.db_timestamps is not None) == (dataset == "tokyotm")


def test_missing_root_explains_layout_and_source(tmp_path):
    with pytest.raises(InputError) as err:
        load_split(tmp_path / "nowhere", "pitts30k", "test")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "not found" in msg
    for part in (
        "datasets/pitts30k_train.mat",
        "datasets/pitts30k_test.mat",
        "000/",
        "queries_real/",
    ):
        assert part in msg
    assert "NetVLAD authors" in msg and "icsa prepare synthetic" in msg
    with pytest.raises(InputError, match=r"tokyoTM_train\.mat.*images/"):
        load_split(tmp_path / "nowhere", "tokyotm", "train")


def test_missing_mat_unknown_dataset_and_split(tmp_path):
    make_dataset(tmp_path, "pitts30k", {"test": (2, 2)})
    with pytest.raises(InputError, match=r"pitts30k_val\.mat: dbStruct file not found"):
        load_split(tmp_path, "pitts30k", "val")
    with pytest.raises(InputError, match=r"'oxford'.*'pitts30k', 'pitts250k', 'tokyotm'"):
        load_split(tmp_path, "oxford", "test")
    with pytest.raises(InputError, match=r"'test' does not exist for tokyotm.*'train', 'val'"):
        load_split(tmp_path, "tokyotm", "test")


def expected_tensor(rgb, hw) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((torch.tensor(rgb, dtype=torch.float32)[:, None, None] / 255 - mean) / std).expand(
        3, *hw
    )


def test_image_dataset_resizes_and_normalises(tmp_path):
    paths = []
    for i, (size, mode) in enumerate((((40, 30), "RGB"), ((16, 12), "L"), ((64, 64), "RGBA"))):
        p = tmp_path / f"img{i}.png"  # PNG: lossless, so pixel values are exact
        Image.new(mode, size, colour(i + 1)[: len(mode)] if mode != "L" else 200).save(p)
        paths.append(p)
    ds = ImageDataset(paths, image_size=(24, 20))
    assert repr(ds) == "< images - #images: 3; size: 24x20 >" and len(ds) == 3
    for i in range(3):
        x, idx = ds[i]
        assert idx == i and x.dtype == torch.float32 and x.shape == (3, 24, 20)
        rgb = (200, 200, 200) if i == 1 else colour(i + 1)
        torch.testing.assert_close(x, expected_tensor(rgb, (24, 20)), atol=1e-5, rtol=0)
    native = ImageDataset(paths[:1])
    assert native[0][0].shape == (3, 30, 40)  # PIL size is (W, H)
    with pytest.raises(InputError, match="image_size"):
        ImageDataset(paths, image_size=(0, 10))


def test_dataloader_with_two_workers_matches_single_process(tmp_path):
    make_dataset(tmp_path, "pitts30k", {"test": (9, 4)}, hw=(20, 28))
    db_ds, q_ds = split_datasets(load_split(tmp_path, "pitts30k", "test"), (16, 24))
    assert repr(db_ds) == "< pitts30k-test-db - #images: 9; size: 16x24 >"
    assert repr(q_ds) == "< pitts30k-test-q - #images: 4; size: 16x24 >"
    loader = DataLoader(db_ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    images = torch.cat([b[0] for b in batches])
    indices = torch.cat([b[1] for b in batches])
    assert images.shape == (9, 3, 16, 24) and indices.tolist() == list(range(9))
    for i in range(9):
        torch.testing.assert_close(images[i], db_ds[i][0], atol=0, rtol=0)
    # distinct colours survive: every image differs from the next one
    assert all((images[i] - images[i + 1]).abs().max() > 0.1 for i in range(8))
