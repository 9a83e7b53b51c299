"""Streaming extraction: small memory windows give the in-memory bytes; bad output is an error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from icsa.data import ImageDataset
from icsa.errors import InputError
from icsa.evaluate import extract_descriptors, extract_in_memory
from icsa.evaluate.extract import _WindowWriter
from icsa.models import build_model

SIZE = (64, 64)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_model("resnet18", "icsa", num_clusters=4, image_size=SIZE, init_seed=0).eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(11):
        path = root / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


class _Poisoned(ImageDataset):
    """An ImageDataset whose item ``bad`` decodes to NaN pixels (as a broken image might)."""

    def __init__(self, paths, bad: int):
        super().__init__(paths, SIZE)
        self.bad = bad

    def __getitem__(self, index):
        image, index = super().__getitem__(index)
        return (image * float("nan") if index == self.bad else image), index


def test_small_window_is_byte_identical_to_in_memory(model, images, tmp_path):
    dataset = ImageDataset(images, SIZE)
    expected = extract_in_memory(model, dataset, batch_size=4, device="cpu")
    # Windows of 3 rows against batches of 4: batches straddle windows.
    out = extract_descriptors(model, dataset, tmp_path / "d.npy", batch_size=4, flush_rows=3,
                              device="cpu")  # fmt: skip
    got = np.load(out)
    assert got.shape == (len(images), 4 * 512) and got.dtype == np.float32
    assert got.tobytes() == expected.tobytes()
    np.save(tmp_path / "ref.npy", expected)  # the same file numpy itself would write
    assert out.read_bytes() == (tmp_path / "ref.npy").read_bytes()
    budget = extract_descriptors(model, dataset, tmp_path / "b.npy", batch_size=4,
                                 memory_budget_mb=0.02, device="cpu")  # fmt: skip
    assert np.load(budget).tobytes() == expected.tobytes()
    # Rows are in dataset order: each equals that image's own descriptor.
    with torch.inference_mode():
        for i in (0, 5, 10):
            one = model(dataset[i][0][None]).numpy()[0]
            np.testing.assert_allclose(got[i], one, rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def test_window_writer_maps_at_most_window_rows(tmp_path):
    data = np.arange(23 * 5, dtype=np.float32).reshape(23, 5)
    writer = _WindowWriter(tmp_path / "w.npy", data.shape, "float32", window_rows=4)
    for start in range(0, 23, 6):
        writer.write(start, data[start : start + 6])
        assert len(writer.window) <= 4
    writer.close()
    assert np.array_equal(np.load(tmp_path / "w.npy"), data)


def test_float16_and_bf16_autocast(model, images, tmp_path):
    dataset = ImageDataset(images[:4], SIZE)
    full = extract_in_memory(model, dataset, batch_size=2, device="cpu")
    half = np.load(extract_descriptors(model, dataset, tmp_path / "h.npy", batch_size=2,
                                       dtype="float16", device="cpu"))  # fmt: skip
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), full, atol=1e-3)
    bf16 = extract_in_memory(model, dataset, batch_size=2, device="cpu", autocast_bf16=True)
    cos = (bf16 * full).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(full, axis=1)
    assert cos.min() > 0.95


def test_nan_descriptor_names_the_image_and_leaves_nothing(model, images, tmp_path):
    dataset = _Poisoned(images[:6], bad=4)
    out = tmp_path / "nan.npy"
    with pytest.raises(InputError, match="img04.png") as err:
        extract_descriptors(model, dataset, out, batch_size=4, device="cpu")
    assert "img03" not in str(err.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_arguments(model, images, tmp_path):
    dataset = ImageDataset(images[:2], SIZE)
    with pytest.raises(InputError, match="dtype"):
        extract_descriptors(model, dataset, tmp_path / "x.npy", dtype="int8", device="cpu")
    with pytest.raises(InputError, match="no images"):
        extract_descriptors(model, ImageDataset([], SIZE), tmp_path / "x.npy", device="cpu")
    with pytest.raises(InputError, match="batch_size"):
        extract_descriptors(model, dataset, tmp_path / "x.npy", batch_size=0, device="cpu")


@pytest.mark.parametrize("rows", [30, 120])  # fewer rows than dims (Gram path) and more
def test_pca_whitening_matches_sklearn(rows, tmp_path):
    from sklearn.decomposition import PCA

    from icsa.evaluate import PCAWhitening, fit_pca

    rng = np.random.default_rng(rows)
    x = (rng.standard_normal((rows, 64)) * np.linspace(3, 0.5, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    pca = fit_pca(np.load(tmp_path / "x.npy", mmap_mode="r"), 10, chunk_rows=7)
    ref = PCA(10, whiten=True, svd_solver="full").fit(x.astype(np.float64))
    np.testing.assert_allclose(pca.eigenvalues, ref.explained_variance_, rtol=1e-6)
    signs = np.sign((pca.components * ref.components_).sum(axis=1))
    np.testing.assert_allclose(np.abs((pca.components * ref.components_).sum(1)), 1, atol=1e-5)
    expected = ref.transform(x) * signs
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    got = pca.apply(x, chunk_rows=13)
    np.testing.assert_allclose(got, expected, atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    pca.save(tmp_path / "p.npz")
    assert np.array_equal(PCAWhitening.load(tmp_path / "p.npz").apply(x), pca.apply(x))
    with pytest.raises(InputError, match="dim = 65"):
        fit_pca(x, 65)
    with pytest.raises(InputError, match="fitted on 64-D"):
        pca.apply(x[:, :32])
