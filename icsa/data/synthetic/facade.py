"""Surface colours: facades (windows, storeys, trims, signs) and the street surface.

Both work on flat arrays of visible points, vectorised over pixels. Patterns finer than a pixel
are faded towards their mean colour (a cheap level of detail) so that distant facades do not
alias into noise that would differ between two nearby camera poses.
"""

from __future__ import annotations

import numpy as np

from icsa.data.synthetic.world import World

# Pixel classes, used by the appearance changes (night lights windows and signs, not walls).
SKY, ROAD, SIDEWALK, WALL, WINDOW, SIGN, MARKING, OCCLUDER = range(8)
ROOF_BAND = 0.6  # metres of parapet above the top storey


def window_hash(*parts: np.ndarray) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per integer tuple (which windows are lit)."""
    h = np.zeros(np.broadcast(*parts).shape, dtype=np.uint64)
    for i, p in enumerate(parts):
        h ^= np.asarray(p).astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B9 + i)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def _lod(feature: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """1 when a feature spans >= 2.5 pixels, 0 when it is below one pixel."""
    return np.clip((feature / np.maximum(footprint, 1e-6) - 1.0) / 1.5, 0.0, 1.0)


def shade_facade(
    world: World,
    seg: np.ndarray,
    u: np.ndarray,
    z: np.ndarray,
    v: np.ndarray,
    f: float,
    sun: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour [H,W,3], class [H,W] and window/sign key [H,W] of one layer of facade hits.

    Per column: ``seg`` facade segment, ``u`` metres along it from its start, ``z`` depth.
    Per pixel: ``v`` height in metres. ``f``: focal length in pixels; ``sun``: unit 2-D vector.
    Column quantities are [1,W] and broadcast against the rows (cheaper than per-pixel gathers).
    """
    bid = world.seg_building[seg]
    b = world.b

    def g(name: str) -> np.ndarray:  # per-column building attribute, [1,W] (or [1,W,3])
        return b[name][bid][None]

    seglen = np.linalg.norm(world.seg_p1[seg] - world.seg_p0[seg], axis=1)[None]
    side, u = world.seg_side[seg][None], u[None]
    kind, sp, sh, gh = g("kind"), g("spacing"), g("storey_h"), g("ground_h")
    ww, wh, sill, height = g("win_w"), g("win_h"), g("sill"), g("height")
    wall, win, trim = g("wall"), g("window"), g("trim")

    # Horizontal structure: per column only.
    ncol = np.floor(seglen / sp)
    uu = u - (seglen - ncol * sp) / 2  # window columns centred on the facade
    col = np.floor(uu / sp)
    cu = np.abs(uu - col * sp - sp / 2)  # distance from the column centre
    h_win = np.choose(
        kind,
        [
            (uu >= 0) & (col < ncol) & (cu < ww / 2),
            (u > 0.4) & (u < seglen - 0.4) & (cu < sp / 2 - 0.07),
            cu < sp / 2 - 0.1,
        ],
    )
    bay = 2 * sp
    h_shop = (np.abs(np.mod(u, bay) - bay / 2) < bay / 2 - 0.35) & (u > 0.5) & (u < seglen - 0.5)
    h_door = np.abs(u - seglen / 2) < 0.6
    h_gwin = (uu >= 0) & (col < ncol) & (cu < ww / 2) & ~h_door
    h_pil = g("pilaster") & (cu > sp / 2 - 0.22)
    shopfront = g("shopfront")

    # Vertical structure: per pixel.
    fl = np.floor((v - gh) / sh)
    fv = v - gh - fl * sh  # height inside the storey
    upper = (v >= gh) & (v < height - ROOF_BAND)
    v_win = np.choose(
        kind,
        [
            (fv >= sill) & (fv < sill + wh),
            (fv >= sill) & (fv < sill + wh),
            (fv > 0.25) & (fv < sh - 0.1),
        ],
    )
    ground = v < gh
    shop = (v > 0.5) & (v < gh - 0.8) & h_shop
    gwin = h_gwin & (v > 1.0) & (v < 1.0 + wh)
    is_win = (upper & h_win & v_win) | (ground & np.where(shopfront, shop, gwin))
    is_trim = upper & ((g("cornice") & (fv < 0.22)) | h_pil)
    is_trim |= (v >= height - ROOF_BAND) | (np.abs(v - gh) < 0.15)
    door = ground & h_door & (v < 2.3) & ~shopfront

    key = np.where(is_win, window_hash(bid[None], side, np.where(ground, -1, fl), col), -1.0)
    pane = win * (0.75 + 0.5 * np.maximum(key, 0.0))[..., None]
    rgb = np.where(is_trim[..., None], trim, wall)
    rgb = np.where(door[..., None], trim * 0.5, rgb)
    rgb = np.where(is_win[..., None], pane, rgb)
    # Level of detail: blend the pattern into its mean colour where windows are sub-pixel.
    fill = np.choose(kind, [ww * wh / (sp * sh), wh / sh, np.full_like(sh, 0.8)])[..., None]
    mean = wall * (1 - fill) + win * fill
    detail = _lod(np.minimum(ww, wh), z[None] / f)[..., None]
    rgb = mean + detail * (rgb - mean)
    cls = np.where(is_win, WINDOW, WALL).astype(np.uint8)

    # Signs: a bitmap in two colours with a dark frame, on the street-facing facade only.
    u0, u1, v0, v1 = g("sign_u0"), g("sign_u1"), g("sign_v0"), g("sign_v1")
    on = g("sign") & (side == g("front")) & (u >= u0) & (u < u1) & (v >= v0) & (v < v1)
    r, c = np.nonzero(on)
    if r.size:
        rows, cols = g("sign_rows")[0, c], g("sign_cols")[0, c]
        uc, vp = u[0, c], v[r, c]
        su0, su1, sv0, sv1 = u0[0, c], u1[0, c], v0[0, c], v1[0, c]
        iu = np.minimum(((uc - su0) / (su1 - su0) * cols).astype(np.int64), cols - 1)
        iv = np.minimum(((sv1 - vp) / (sv1 - sv0) * rows).astype(np.int64), rows - 1)
        bit = b["sign_bits"][bid[c], iv, iu]
        colour = np.where(bit[:, None], b["sign_a"][bid[c]], b["sign_b"][bid[c]])
        frame = np.minimum.reduce([uc - su0, su1 - uc, vp - sv0, sv1 - vp]) < 0.1
        colour[frame] = 0.1
        rgb[r, c], cls[r, c], key[r, c] = colour, SIGN, 2.0
    n = world.seg_normal[seg]
    shade = 0.62 + 0.38 * np.maximum(n[:, 0] * sun[0] + n[:, 1] * sun[1], 0.0)
    return rgb * shade[None, :, None].astype(np.float32), cls, key.astype(np.float32)


def shade_ground(
    world: World, gx: np.ndarray, gy: np.ndarray, footprint: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Colour [...,3] and class [...] of ground points (asphalt, sidewalk, dashed centre lines)."""
    st = world.style
    px, py = st.block_pitch
    rx, ry = np.mod(gx, px), np.mod(gy, py)
    dx, dy = np.minimum(rx, px - rx), np.minimum(ry, py - ry)  # to the nearest centre lines
    road = (dx < st.road_width / 2) | (dy < st.road_width / 2)
    half = st.street_width / 2
    dash_x = (dy < 0.12) & (dx > half) & (np.mod(gx, 6.0) < 3.0)
    dash_y = (dx < 0.12) & (dy > half) & (np.mod(gy, 6.0) < 3.0)
    mark = dash_x | dash_y
    base = np.where(road[..., None], np.asarray(st.road), np.asarray(st.sidewalk))
    # Markings fade with distance (sub-pixel lines would alias).
    detail = _lod(np.full_like(footprint, 0.5), footprint)[..., None]
    marked = base + detail * (np.asarray(st.marking) - base)
    rgb = np.where(mark[..., None], marked, base)
    cls = np.where(mark, MARKING, np.where(road, ROAD, SIDEWALK))
    return rgb, cls
