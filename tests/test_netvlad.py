"""NetVLAD against an explicit-loop numpy reference, and the α initialisation rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icsa.errors import InputError
from icsa.models import NetVLAD, netvlad_alpha


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def reference_netvlad(x: np.ndarray, weight: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Loops over images, clusters and locations (float64): vladv1 with preL2."""
    b, c, h, w = x.shape
    k = centroids.shape[0]
    out = np.zeros((b, k * c))
    for n in range(b):
        v = np.zeros((k, c))
        for i in range(h):
            for j in range(w):
                d = x[n, :, i, j] / np.linalg.norm(x[n, :, i, j])
                logits = np.array([weight[m] @ d for m in range(k)])
                a = np.exp(logits - logits.max())
                a /= a.sum()
                for m in range(k):
                    v[m] += a[m] * (d - centroids[m])
        for m in range(k):
            v[m] /= np.linalg.norm(v[m])
        flat = v.reshape(-1)
        out[n] = flat / np.linalg.norm(flat)
    return out


def test_forward_matches_loop_reference() -> None:
    vlad = NetVLAD(num_clusters=5, dim=8)
    with torch.no_grad():
        vlad.conv.weight.normal_(0, 3)
        vlad.centroids.normal_()
    x = torch.randn(2, 8, 3, 4)
    y = vlad(x).detach().numpy()
    ref = reference_netvlad(
        x.double().numpy(),
        vlad.conv.weight.detach()[:, :, 0, 0].double().numpy(),
        vlad.centroids.detach().double().numpy(),
    )
    assert y.shape == (2, 5 * 8)
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-6)
    assert vlad.conv.bias is None


def test_alpha_rule_against_explicit_computation() -> None:
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(4, 6))
    descriptors = rng.normal(size=(50, 6)) * 3.0  # not normalised: the rule normalises
    gaps = []
    for d in descriptors:
        d = d / math.sqrt(sum(v * v for v in d))
        dots = sorted((c / np.linalg.norm(c)) @ d for c in centroids)
        gaps.append(dots[-1] - dots[-2])
    alpha = -math.log(0.01) / (sum(gaps) / len(gaps))
    assert netvlad_alpha(centroids, descriptors) == pytest.approx(alpha, rel=1e-10)

    vlad = NetVLAD(4, 6)
    assert vlad.init_from_centroids(centroids, descriptors) == pytest.approx(alpha, rel=1e-10)
    c_hat = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    np.testing.assert_allclose(
        vlad.conv.weight.detach()[:, :, 0, 0].numpy(), alpha * c_hat, rtol=1e-6
    )
    np.testing.assert_allclose(vlad.centroids.detach().numpy(), centroids, rtol=1e-6)
    assert vlad.conv.bias is None


def test_initialised_assignment_is_nearly_hard() -> None:
    # With α from the rule, a descriptor's top cluster gets weight ≥ 1/(1 + (K-1)·0.01^(g/ḡ)):
    # on average the soft assignment should be clearly peaked.
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(8, 16))
    descriptors = centroids[rng.integers(0, 8, 400)] + 0.3 * rng.normal(size=(400, 16))
    vlad = NetVLAD(8, 16)
    vlad.init_from_centroids(centroids, descriptors)
    x = torch.from_numpy(descriptors.T.astype(np.float32))[None, :, :, None]  # [1,C,N,1]
    x = torch.nn.functional.normalize(x, dim=1)
    assign = torch.softmax(vlad.conv(x)[0, :, :, 0], dim=0)  # [K,N]
    assert assign.max(dim=0).values.mean() > 0.8


def test_bad_shapes_are_input_errors() -> None:
    vlad = NetVLAD(4, 6)
    with pytest.raises(InputError, match=r"\(4, 6\)"):
        vlad.init_from_centroids(np.ones((3, 6)), np.ones((10, 6)))
    with pytest.raises(InputError, match="descriptors"):
        vlad.init_from_centroids(np.eye(4, 6), np.ones((10, 5)))
    with pytest.raises(InputError, match="gap"):
        vlad.init_from_centroids(np.ones((4, 6)), np.random.rand(10, 6))
