"""Fig. 5: singular-value ratios σ_i/σ_1 of the local descriptors entering NetVLAD.

The paper stacks the C-vectors of all locations of all test images into one matrix X, takes its
SVD and plots σ_i/σ_1; fewer ratios above 0.1 / 0.01 means fewer principal components (it
reports 3/3/2 above 0.1 and 35/30/22 above 0.01 for VGG16, +IA, +ICSA). X is not centred, as in
the paper. The singular values come from the eigenvalues of the Gram matrix XᵀX (see
``local_descriptors``), which equals the SVD of X up to rounding.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from icsa.analysis.plotting import save_figure  # noqa: E402
from icsa.io import atomic_path, write_json  # noqa: E402

THRESHOLDS = (0.1, 0.01)


def singular_values_from_gram(gram: np.ndarray, count: int) -> np.ndarray:
    """Singular values of X (descending) from G = XᵀX, with X of ``count`` rows.

    Only min(count, C) values exist; tiny negative eigenvalues from rounding are clipped to 0.
    """
    gram = np.asarray(gram, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram: expected a square matrix, got shape {gram.shape}")
    eig = np.linalg.eigvalsh((gram + gram.T) / 2)[::-1]  # descending
    rank = min(int(count), gram.shape[0])
    return np.sqrt(np.clip(eig[:rank], 0.0, None))


def singular_value_ratios(singular_values: np.ndarray) -> np.ndarray:
    """σ_i / σ_1 (σ sorted descending); all ≤ 1."""
    sv = np.asarray(singular_values, dtype=np.float64)
    if sv.size == 0 or sv[0] <= 0:
        raise ValueError("singular values: expected a non-empty array with σ_1 > 0")
    return sv / sv[0]


def count_above(ratios: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> dict[str, int]:
    """How many ratios exceed each threshold, keyed by the threshold as written ('0.1')."""
    return {f"{t:g}": int(np.sum(np.asarray(ratios) > t)) for t in thresholds}


def plot_singular_value_ratios(
    ratios: Mapping[str, np.ndarray],
    out_png: str | os.PathLike,
    thresholds: Sequence[float] = THRESHOLDS,
    max_rank: int | None = 100,
    data_label: str | None = None,
) -> None:
    """One curve per model (log y), the counts above each threshold in the legend."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, r in ratios.items():
        r = np.asarray(r)[:max_rank] if max_rank else np.asarray(r)
        counts = count_above(ratios[label], thresholds)
        text = ", ".join(f">{k}: {v}" for k, v in counts.items())
        ax.plot(np.arange(1, r.size + 1), r, marker=".", ms=3, label=f"{label} ({text})")
    for t in thresholds:
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("i (i-th largest singular value)")
    ax.set_ylabel("σ_i / σ_1")
    ax.set_title("Singular values of the local descriptors entering NetVLAD")
    ax.legend(fontsize=8)
    save_figure(fig, out_png, data_label=data_label)


def write_svd_data(
    singular_values: Mapping[str, np.ndarray],
    out_csv: str | os.PathLike,
    out_json: str | os.PathLike,
    extra: Mapping[str, Mapping] | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
) -> None:
    """CSV rows (model, rank, singular_value, ratio) and a JSON of counts per model."""
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "rank", "singular_value", "ratio"])
        for label, sv in singular_values.items():
            for i, (s, r) in enumerate(zip(sv, singular_value_ratios(sv)), start=1):
                writer.writerow([label, i, f"{s:.9g}", f"{r:.9g}"])
    summary = {
        label: {
            "num_singular_values": int(len(sv)),
            "above": count_above(singular_value_ratios(sv), thresholds),
            **(dict(extra[label]) if extra and label in extra else {}),
        }
        for label, sv in singular_values.items()
    }
    write_json(out_json, summary)
