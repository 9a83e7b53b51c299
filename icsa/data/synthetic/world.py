"""The procedural 2-D street world: a street grid, building footprints, facade templates, signs.

A city is a regular grid of streets (axis-aligned, centre lines at ``origin + i * pitch``).
Each block holds two rows of rectangular buildings with irregular widths, setbacks and alleys.
Every building copies one of a small SHARED set of facade templates (window grid, storeys,
colours) and varies it (tint, window spacing, storeys): repeated structure that makes place
recognition hard. A fraction of buildings carries a sign board with a random bitmap pattern:
the distinctive landmarks. Two styles exist: Pittsburgh-like (brick, wide streets, blue sky)
and Tokyo-like (pale tiles, narrow streets, tall narrow buildings, vertical signs, haze).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("punched", "strip", "curtain")  # window layouts of a facade template
SIGN_CELLS = 12  # signs are bitmaps of at most SIGN_CELLS x SIGN_CELLS cells


@dataclass(frozen=True)
class Style:
    name: str
    block_pitch: tuple[float, float]  # street centre-line spacing in x and y (metres)
    street_width: float  # road + sidewalks between building rows
    road_width: float  # asphalt part
    lot_width: tuple[float, float]
    storeys: tuple[int, int]
    storey_height: tuple[float, float]
    wall_palette: tuple[tuple[float, float, float], ...]
    window_palette: tuple[tuple[float, float, float], ...]
    sign_palette: tuple[tuple[float, float, float], ...]
    kind_weights: tuple[float, float, float]  # probabilities of KINDS
    vertical_sign_prob: float
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    road: tuple[float, float, float]
    sidewalk: tuple[float, float, float]
    marking: tuple[float, float, float]
    fog_distance: float  # metres; contrast falls as exp(-z / fog_distance)
    sun_azimuth_deg: float
    utm_origin: tuple[float, float]  # local (0, 0) in UTM metres


_SIGNS = (
    (0.85, 0.1, 0.1),
    (0.1, 0.3, 0.85),
    (0.95, 0.8, 0.1),
    (0.1, 0.65, 0.25),
    (0.95, 0.95, 0.95),
    (0.05, 0.05, 0.05),
    (0.9, 0.4, 0.05),
    (0.6, 0.1, 0.7),
)

PITTSBURGH = Style(
    name="pittsburgh",
    block_pitch=(84.0, 56.0),
    street_width=16.0,
    road_width=10.0,
    lot_width=(8.0, 16.0),
    storeys=(2, 6),
    storey_height=(3.2, 3.8),
    wall_palette=(
        (0.55, 0.25, 0.18),
        (0.62, 0.38, 0.28),
        (0.45, 0.3, 0.22),
        (0.72, 0.62, 0.48),
        (0.6, 0.58, 0.55),
        (0.4, 0.2, 0.15),
        (0.78, 0.72, 0.6),
        (0.35, 0.36, 0.38),
    ),
    window_palette=((0.15, 0.18, 0.22), (0.22, 0.27, 0.33), (0.3, 0.3, 0.28), (0.12, 0.14, 0.2)),
    sign_palette=_SIGNS,
    kind_weights=(0.65, 0.15, 0.2),
    vertical_sign_prob=0.15,
    sky_top=(0.35, 0.55, 0.85),
    sky_horizon=(0.75, 0.84, 0.95),
    road=(0.3, 0.3, 0.31),
    sidewalk=(0.6, 0.58, 0.55),
    marking=(0.9, 0.8, 0.25),
    fog_distance=260.0,
    sun_azimuth_deg=35.0,
    utm_origin=(584000.0, 4477000.0),
)

TOKYO = Style(
    name="tokyo",
    block_pitch=(52.0, 38.0),
    street_width=10.0,
    road_width=6.0,
    lot_width=(5.0, 10.0),
    storeys=(3, 10),
    storey_height=(2.9, 3.3),
    wall_palette=(
        (0.88, 0.87, 0.83),
        (0.75, 0.75, 0.74),
        (0.85, 0.8, 0.68),
        (0.62, 0.7, 0.75),
        (0.5, 0.5, 0.52),
        (0.8, 0.72, 0.7),
        (0.93, 0.93, 0.95),
        (0.7, 0.66, 0.58),
    ),
    window_palette=((0.25, 0.38, 0.4), (0.35, 0.4, 0.45), (0.18, 0.22, 0.25), (0.45, 0.5, 0.5)),
    sign_palette=_SIGNS,
    kind_weights=(0.35, 0.4, 0.25),
    vertical_sign_prob=0.75,
    sky_top=(0.68, 0.72, 0.78),
    sky_horizon=(0.88, 0.88, 0.86),
    road=(0.42, 0.42, 0.43),
    sidewalk=(0.62, 0.55, 0.5),
    marking=(0.95, 0.95, 0.95),
    fog_distance=170.0,
    sun_azimuth_deg=-50.0,
    utm_origin=(385000.0, 3950000.0),
)


@dataclass
class World:
    """Flat numpy arrays; ``seg_*`` per facade segment, ``b_*`` per building."""

    style: Style
    nx: int  # blocks in x
    ny: int  # blocks in y
    seg_p0: np.ndarray  # [S,2]
    seg_p1: np.ndarray  # [S,2]
    seg_normal: np.ndarray  # [S,2] outward unit normal
    seg_building: np.ndarray  # [S]
    seg_side: np.ndarray  # [S] 0..3 = facing -y, +x, +y, -x
    b: dict[str, np.ndarray]  # per-building attributes, see _make_buildings

    @property
    def extent(self) -> tuple[float, float]:
        return self.nx * self.style.block_pitch[0], self.ny * self.style.block_pitch[1]


def make_templates(style: Style, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The shared facade templates: layout kind, colours and window geometry."""
    wall = np.asarray(style.wall_palette)[rng.integers(len(style.wall_palette), size=count)]
    window = np.asarray(style.window_palette)[rng.integers(len(style.window_palette), size=count)]
    win_w = rng.uniform(0.9, 1.7, count)
    return {
        "kind": rng.choice(len(KINDS), size=count, p=np.asarray(style.kind_weights)),
        "wall": wall * rng.uniform(0.9, 1.1, (count, 1)),
        "window": window,
        "trim": np.where(rng.random((count, 1)) < 0.5, wall * 0.7, np.clip(wall * 1.35, 0, 0.95)),
        "win_w": win_w,
        "win_h": rng.uniform(1.1, 1.9, count),
        "sill": rng.uniform(0.7, 1.0, count),
        "spacing": win_w + rng.uniform(0.9, 2.6, count),
        "storey_h": rng.uniform(*style.storey_height, count),
        "ground_ratio": rng.uniform(1.1, 1.45, count),
        "shopfront": rng.random(count) < 0.5,
        "cornice": rng.random(count) < 0.5,
        "pilaster": rng.random(count) < 0.35,
    }


def build_world(
    style: Style,
    nx: int,
    ny: int,
    template_count: int,
    tint_jitter: float,
    sign_fraction: float,
    rng: np.random.Generator,
) -> World:
    """Fill an ``nx`` x ``ny`` block grid with buildings (two rows per block)."""
    px, py = style.block_pitch
    half = style.street_width / 2
    rects = []  # (x0, y0, x1, y1, front_side)
    for bi in range(nx):
        for bj in range(ny):
            x0, x1 = bi * px + half, (bi + 1) * px - half
            y0, y1 = bj * py + half, (bj + 1) * py - half
            ymid = (y0 + y1) / 2 + rng.uniform(-0.1, 0.1) * (y1 - y0)
            for row, (ya, yb, front) in enumerate(((y0, ymid, 0), (ymid, y1, 2))):
                x = x0
                while x < x1 - 2.0:
                    width = min(rng.uniform(*style.lot_width), x1 - x)
                    if x1 - (x + width) < style.lot_width[0] * 0.6:
                        width = x1 - x  # don't leave a sliver lot at the block's end
                    gap_l = 0.0 if rng.random() < 0.7 else rng.uniform(0.8, 2.5)
                    setback = 0.0 if rng.random() < 0.5 else rng.uniform(0.3, 1.8)
                    back = rng.uniform(0.0, 2.0)
                    if row == 0:
                        r = (x + gap_l, ya + setback, x + width, yb - back)
                    else:
                        r = (x + gap_l, ya + back, x + width, yb - setback)
                    if r[2] - r[0] > 2.5 and r[3] - r[1] > 4.0:
                        rects.append((*r, front))
                    x += width
    rects_a = np.asarray(rects, dtype=np.float64)
    b = _make_buildings(style, rects_a, template_count, tint_jitter, sign_fraction, rng)
    x0, y0, x1, y1 = (rects_a[:, i] for i in range(4))
    # Counter-clockwise corners so that the outward normal of edge p0->p1 is (e.y, -e.x).
    corners = np.stack(
        [
            np.stack([x0, y0], 1),
            np.stack([x1, y0], 1),
            np.stack([x1, y1], 1),
            np.stack([x0, y1], 1),
        ],
        1,
    )  # [B,4,2]
    p0 = corners.reshape(-1, 2)
    p1 = np.roll(corners, -1, axis=1).reshape(-1, 2)
    e = p1 - p0
    normal = np.stack([e[:, 1], -e[:, 0]], 1) / np.linalg.norm(e, axis=1, keepdims=True)
    nb = len(rects_a)
    return World(
        style=style,
        nx=nx,
        ny=ny,
        seg_p0=p0,
        seg_p1=p1,
        seg_normal=normal,
        seg_building=np.repeat(np.arange(nb), 4),
        seg_side=np.tile(np.arange(4), nb),
        b=b,
    )


def _make_buildings(
    style: Style,
    rects: np.ndarray,
    template_count: int,
    tint_jitter: float,
    sign_fraction: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    nb = len(rects)
    t = make_templates(style, template_count, rng)
    tid = rng.integers(template_count, size=nb)
    b = {k: v[tid] for k, v in t.items()}
    b["template"] = tid
    tint = np.clip(1.0 + rng.normal(0.0, tint_jitter, (nb, 3)), 0.6, 1.4)
    b["wall"] = np.clip(b["wall"] * tint, 0.0, 1.0)
    b["trim"] = np.clip(b["trim"] * tint, 0.0, 1.0)
    b["spacing"] = b["spacing"] * rng.uniform(0.88, 1.12, nb)
    b["ground_h"] = b["storey_h"] * b["ground_ratio"]
    storeys = rng.integers(style.storeys[0], style.storeys[1] + 1, size=nb)
    b["height"] = b["ground_h"] + (storeys - 1) * b["storey_h"] + rng.uniform(0.4, 1.2, nb)
    b["front"] = rects[:, 4].astype(np.int64)
    b["width"] = rects[:, 2] - rects[:, 0]
    _add_signs(style, b, sign_fraction, rng)
    # float32 halves the memory traffic of the per-pixel shading.
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in b.items()}


def _add_signs(style: Style, b: dict, sign_fraction: float, rng: np.random.Generator) -> None:
    """Sign boards on the street-facing facade: a random bitmap in two saturated colours."""
    nb = len(b["width"])
    has = rng.random(nb) < sign_fraction
    vertical = rng.random(nb) < style.vertical_sign_prob
    width = b["width"]
    sw = np.where(
        vertical, rng.uniform(0.9, 1.4, nb), np.minimum(rng.uniform(2.5, 7.0, nb), width - 0.6)
    )
    u0 = rng.uniform(0.0, 1.0, nb) * np.maximum(width - sw, 0.0)
    gh = b["ground_h"]
    sh = np.where(
        vertical,
        np.minimum(rng.uniform(3.0, 7.0, nb), b["height"] - gh - 0.8),
        rng.uniform(0.7, 1.1, nb),
    )
    v0 = np.where(vertical, gh + 0.3, gh - sh - 0.15)
    b["sign"] = has & (sw > 0.8) & (sh > 0.6)
    b["sign_u0"], b["sign_u1"] = u0, u0 + sw
    b["sign_v0"], b["sign_v1"] = v0, v0 + sh
    b["sign_cols"] = np.where(vertical, rng.integers(2, 4, nb), rng.integers(6, SIGN_CELLS + 1, nb))
    b["sign_rows"] = np.where(vertical, rng.integers(6, SIGN_CELLS + 1, nb), rng.integers(2, 5, nb))
    b["sign_a"], b["sign_b"] = _sign_colours(np.asarray(style.sign_palette), nb, rng)
    b["sign_bits"] = rng.random((nb, SIGN_CELLS, SIGN_CELLS)) < 0.5


def _sign_colours(
    palette: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Two colours per sign from ``palette`` [P, 3], always different from each other."""
    ca = rng.integers(len(palette), size=count)
    cb = (ca + rng.integers(1, len(palette), size=count)) % len(palette)
    return palette[ca], palette[cb]


def renovate(world: World, fraction: float, rng: np.random.Generator) -> World:
    """The same street grid some years later: about ``fraction`` of the buildings repainted and
    as many sign boards replaced (new bitmap and colours), put up or taken down.

    Geometry (footprints, storeys, windows) is unchanged, as a city is between Street View
    captures a few years apart; the input world is not modified.
    """
    b = {k: v.copy() for k, v in world.b.items()}
    nb = len(b["width"])
    paint = rng.random(nb) < fraction
    tint = np.clip(1.0 + rng.normal(0.0, 0.3, (nb, 3)), 0.5, 1.6).astype(np.float32)
    for key in ("wall", "trim"):
        b[key][paint] = np.clip(b[key][paint] * tint[paint], 0.0, 1.0)
    fits = (b["sign_u1"] - b["sign_u0"] > 0.8) & (b["sign_v1"] - b["sign_v0"] > 0.6)
    change = (rng.random(nb) < fraction) & fits
    flip = change & (rng.random(nb) < 0.3)  # a third of the changes: a sign appears or goes
    b["sign"] = np.where(flip, ~b["sign"], b["sign"] | change)
    colour_a, colour_b = _sign_colours(np.asarray(world.style.sign_palette, np.float32), nb, rng)
    b["sign_a"][change], b["sign_b"][change] = colour_a[change], colour_b[change]
    bits = rng.random(b["sign_bits"].shape) < 0.5
    b["sign_bits"][change] = bits[change]
    return World(world.style, world.nx, world.ny, world.seg_p0, world.seg_p1, world.seg_normal,
                 world.seg_building, world.seg_side, b)  # fmt: skip
