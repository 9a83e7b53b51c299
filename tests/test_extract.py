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
    bf16 = extract_in_memory(model, dataset, batch_size=2, device="cpu", fast=True)
    cos = (bf16 * full).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(full, axis=1)
    assert cos.min() > 0.95
    # The fast path (channels_last) leaves the model as it was: float32 again is bit-identical.
    assert all(p.is_contiguous() for p in model.parameters())
    np.testing.assert_array_equal(extract_in_memory(model, dataset, batch_size=2, device="cpu"),
                                  full)  # fmt: skip


def test_fast_inference_modes_follow_the_cpu_flags(tmp_path):
    from icsa.fast_inference import cpu_has_bf16, use_bf16

    with_amx, without = tmp_path / "amx", tmp_path / "plain"
    with_amx.write_text("processor : 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile\n")
    without.write_text("processor : 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_bf16(with_amx) and not cpu_has_bf16(without)
    assert not cpu_has_bf16(tmp_path / "missing")
    cpu = torch.device("cpu")
    assert use_bf16("auto", cpu, cpuinfo=with_amx) and use_bf16("on", cpu, cpuinfo=with_amx)
    assert not use_bf16("auto", cpu, cpuinfo=without)  # falls back to float32
    assert not use_bf16("off", cpu, cpuinfo=with_amx)
    with pytest.raises(InputError, match="fast_inference = 'on': cpu has no bfloat16"):
        use_bf16("on", cpu, cpuinfo=without)
    with pytest.raises(InputError, match="expected one of auto, on, off"):
        use_bf16("fast", cpu)
