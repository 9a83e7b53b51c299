"""PCA whitening of descriptors (NetVLAD's 32,768 → 4,096-D setting, Arandjelović et al. §5).

Fitted on training-database descriptors and stored as its own ``.npz`` artefact (``mean[D]``,
``components[d, D]`` with orthonormal rows, ``eigenvalues[d]`` of the covariance). Applying it
projects, divides each coordinate by the square root of its eigenvalue (whitening) and L2
normalises the result, so whitened descriptors are compared with the same L2 search.

With fewer rows than dimensions (10k × 32,768 for Pitts30k) the fit goes through the N × N Gram
matrix instead of the D × D covariance: same non-zero eigenvalues, far less memory. Both are
accumulated over row blocks in float64, so memmapped descriptors are read block by block.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icsa.arrays import read_npz
from icsa.errors import InputError
from icsa.evaluate.memmap import read_rows
from icsa.io import atomic_path

KEYS = ("mean", "components", "eigenvalues")


@dataclass(frozen=True)
class PCAWhitening:
    mean: np.ndarray  # [D] float32
    components: np.ndarray  # [d, D] float32, orthonormal rows, largest variance first
    eigenvalues: np.ndarray  # [d] float64, covariance eigenvalues, descending

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def input_dim(self) -> int:
        return int(self.components.shape[1])

    def apply(self, descriptors: np.ndarray, chunk_rows: int = 4096) -> np.ndarray:
        """Project, whiten and L2-normalise ``descriptors[N, D]`` → float32 ``[N, d]``."""
        if descriptors.ndim != 2 or descriptors.shape[1] != self.input_dim:
            raise InputError(
                f"descriptors of shape {descriptors.shape} given to a PCA fitted on "
                f"{self.input_dim}-D descriptors; expected [N, {self.input_dim}]"
            )
        # Tiny trailing eigenvalues would blow up noise: floor them relative to the largest.
        scale = 1.0 / np.sqrt(np.maximum(self.eigenvalues, 1e-12 * self.eigenvalues[0]))
        out = np.empty((len(descriptors), self.dim), dtype=np.float32)
        for s in range(0, len(descriptors), chunk_rows):
            block = read_rows(descriptors, s, s + chunk_rows) - self.mean
            y = (block @ self.components.T) * scale.astype(np.float32)
            norms = np.linalg.norm(y, axis=1, keepdims=True)
            out[s : s + chunk_rows] = y / np.maximum(norms, 1e-12)
        return out

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=self.mean, components=self.components, eigenvalues=self.eigenvalues)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PCAWhitening:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"PCA file {path} not found, expected an .npz from `icsa pca fit`")
        mean, comps, eig = read_npz(path, KEYS, "PCA file").values()
        if comps.ndim != 2 or mean.shape != (comps.shape[1],) or eig.shape != (comps.shape[0],):
            raise InputError(
                f"PCA file {path}: mean {mean.shape}, components {comps.shape}, eigenvalues "
                f"{eig.shape}; expected [D], [d, D], [d]"
            )
        return cls(mean.astype(np.float32), comps.astype(np.float32), eig.astype(np.float64))


def _mean(x: np.ndarray, chunk_rows: int) -> np.ndarray:
    total = np.zeros(x.shape[1], dtype=np.float64)
    for s in range(0, len(x), chunk_rows):
        total += read_rows(x, s, s + chunk_rows, np.float64).sum(axis=0)
    return total / len(x)


def _centered(x: np.ndarray, mean: np.ndarray, s: int, chunk_rows: int) -> np.ndarray:
    return read_rows(x, s, s + chunk_rows, np.float64) - mean


def fit_pca(
    descriptors: np.ndarray, dim: int, chunk_rows: int = 1024, source: str = "descriptors"
) -> PCAWhitening:
    """Fit PCA whitening to ``descriptors[N, D]`` (array or memmap), keeping ``dim`` components."""
    if descriptors.ndim != 2:
        raise InputError(f"{source}: shape {descriptors.shape}, expected [N, D]")
    n, d = descriptors.shape
    if not 1 <= dim <= min(n - 1, d):
        raise InputError(
            f"{source}: PCA dim = {dim} from {n} descriptors of {d}-D; expected "
            f"1 <= dim <= min(N - 1, D) = {min(n - 1, d)} (centred data has rank <= N - 1)"
        )
    mean = _mean(descriptors, chunk_rows)
    starts = range(0, n, chunk_rows)
    if n <= d:
        gram = np.empty((n, n), dtype=np.float64)  # Xc Xc^T, block by block
        for i in starts:
            xi = _centered(descriptors, mean, i, chunk_rows)
            for j in starts:
                if j > i:
                    break
                block = xi @ _centered(descriptors, mean, j, chunk_rows).T
                gram[i : i + len(xi), j : j + block.shape[1]] = block
                gram[j : j + block.shape[1], i : i + len(xi)] = block.T
        lam, vec = np.linalg.eigh(gram)
        lam, vec = lam[::-1][:dim], vec[:, ::-1][:, :dim]
        comps = np.zeros((dim, d), dtype=np.float64)
        for i in starts:  # u_j = Xc^T v_j / sqrt(lam_j) has unit norm
            comps += vec[i : i + chunk_rows].T @ _centered(descriptors, mean, i, chunk_rows)
        comps /= np.sqrt(np.maximum(lam, 1e-300))[:, None]
    else:
        cov = np.zeros((d, d), dtype=np.float64)
        for i in starts:
            xi = _centered(descriptors, mean, i, chunk_rows)
            cov += xi.T @ xi
        lam, vec = np.linalg.eigh(cov)
        lam, comps = lam[::-1][:dim], vec[:, ::-1][:, :dim].T
    # Deterministic signs: each component's largest-magnitude entry is positive.
    signs = np.sign(comps[np.arange(dim), np.abs(comps).argmax(axis=1)])
    comps *= np.where(signs == 0, 1.0, signs)[:, None]
    return PCAWhitening(mean.astype(np.float32), comps.astype(np.float32), lam / (n - 1))
