"""Figs. 9–10: heat maps of a trained ICSA's channel and spatial weights.

The paper shows the 512 channel weights reshaped to 16×32 (Fig. 9, spread 0.989–0.994) and the
30×40 spatial weights (Fig. 10, all 0.992). The equal spatial weights are no accident: NetVLAD
L2-normalises each local descriptor, so a positive per-location scale cancels, the spatial
weights get zero gradient, and weight decay alone shrinks them all by the same factor. The
titles state min, max and spread so that a reader sees this without a colour bar.

Weights are read from the raw state dict (``attention.*`` keys) and recognised by shape —
channel [1,C,1,1] (or [C,1,1]/[C]), spatial [1,1,H,W] (or [1,H,W]) — so the maps need no
model code and work for any module holding such a pair.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from icsa.analysis.plotting import save_figure  # noqa: E402
from icsa.errors import InputError  # noqa: E402
from icsa.io import atomic_path  # noqa: E402

NAMED = ("channel_weight", "spatial_weight")


@dataclass(frozen=True)
class ICSAWeights:
    channel: np.ndarray  # [C]
    spatial: np.ndarray  # [H, W]


def grid_shape(channels: int) -> tuple[int, int]:
    """Near-square rows×cols with rows·cols = C and rows ≤ cols: 512 → 16×32 (as the paper)."""
    if channels < 1:
        raise InputError(f"channels: {channels}; expected a positive count")
    rows = max(d for d in range(1, math.isqrt(channels) + 1) if channels % d == 0)
    return rows, channels // rows


def _kind(shape: tuple[int, ...]) -> str | None:
    """'channel' for [C]/[C,1,1]/[1,C,1,1], 'spatial' for [1,H,W]/[1,1,H,W], else None."""
    dims = list(shape)
    if len(dims) == 1:
        return "channel"
    while len(dims) > 3 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) != 3:
        return None
    c, h, w = dims
    if h == 1 and w == 1 and c > 1:
        return "channel"
    if c == 1 and h * w > 1:
        return "spatial"
    return None


def icsa_weights_from_state(
    state: Mapping[str, torch.Tensor], prefix: str = "attention.", source: str = "state dict"
) -> ICSAWeights:
    """Find the channel and spatial weight tensors under ``prefix`` in a state dict."""
    found: dict[str, list[tuple[str, torch.Tensor]]] = {"channel": [], "spatial": []}
    for key, value in state.items():
        if key.startswith(prefix) and torch.is_tensor(value) and value.is_floating_point():
            # ICSA names its halves channel_weight/spatial_weight; shape decides otherwise.
            name = key.rsplit(".", 1)[-1]
            kind = name.split("_")[0] if name in NAMED else _kind(tuple(value.shape))
            if kind:
                found[kind].append((key, value))
    if len(found["channel"]) != 1 or len(found["spatial"]) != 1:
        keys = {k: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}
        raise InputError(
            f"{source}: attention tensors {keys}; expected one channel weight [1,C,1,1] and one "
            "spatial weight [1,1,H,W] (a trained 'icsa' model)"
        )
    channel = found["channel"][0][1].detach().float().cpu().numpy().reshape(-1)
    sp = found["spatial"][0][1].detach().float().cpu().numpy()
    return ICSAWeights(channel=channel, spatial=sp.reshape(sp.shape[-2], sp.shape[-1]))


def load_icsa_weights(checkpoint: str | os.PathLike) -> ICSAWeights:
    """Read the weights from a training checkpoint (``model_state``) or a bare state dict."""
    obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = obj.get("model_state", obj) if isinstance(obj, dict) else None
    if not isinstance(state, Mapping):
        raise InputError(f"{checkpoint}: not a checkpoint dict; expected 'model_state'")
    return icsa_weights_from_state(state, source=str(checkpoint))


def summary(values: np.ndarray) -> dict[str, float | list[int]]:
    """min, max, spread (max − min), mean and std of an array, plus its shape."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "shape": list(v.shape),
        "min": float(v.min()),
        "max": float(v.max()),
        "spread": float(v.max() - v.min()),
        "mean": float(v.mean()),
        "std": float(v.std()),
    }


def plot_heatmap(grid: np.ndarray, title: str, out_png: str | os.PathLike) -> None:
    """imshow of a 2-D array with a colour bar; min/max/spread appended to ``title``."""
    s = summary(grid)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    # A constant map would give matplotlib a zero-width colour range: widen it slightly.
    vmin, vmax = s["min"], s["max"]
    if vmax - vmin < 1e-12:
        vmin, vmax = vmin - 1e-3, vmax + 1e-3
    im = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, aspect="equal")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(
        f"{title}\nmin {s['min']:.6f}, max {s['max']:.6f}, spread {s['spread']:.3g}", fontsize=9
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # cells, not fractions
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"{grid.shape[1]} columns")
    ax.set_ylabel(f"{grid.shape[0]} rows")
    save_figure(fig, out_png)


def write_grid_csv(grid: np.ndarray, out_csv: str | os.PathLike) -> None:
    """The heat map's numbers, one CSV row per image row (full float precision)."""
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows([[f"{x:.9g}" for x in row] for row in np.asarray(grid)])
