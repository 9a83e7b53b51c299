"""Column-wise ray casting of the street world into a pinhole image.

For every image column one ray is cast in the ground plane and intersected with all facade
segments near the camera (vectorised: columns x segments). The ``LAYERS`` nearest front-facing
hits are kept, so a taller building shows above a lower one in front of it. A wall at
perpendicular depth z spans the rows ``horizon - f (h_wall - h_cam) / z`` to
``horizon + f h_cam / z`` (perspective: size ~ 1/z); every pixel of it is coloured from its
facade coordinates (metres along the wall, height). Below the walls lies the street, above
them the sky; haze blends everything towards the horizon colour with distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icsa.data.synthetic.facade import SKY, shade_facade, shade_ground
from icsa.data.synthetic.world import World

CAM_HEIGHT = 1.6  # metres above the street
HORIZON = 0.62  # horizon row as a fraction of the image height (camera pitched up)
LAYERS = 3  # nearest facade hits kept per column
RADIUS = 220.0  # metres; facades farther away are not considered


@dataclass(frozen=True)
class Camera:
    x: float
    y: float
    heading_deg: float  # 0 = +x (east), counter-clockwise
    fov_deg: float  # horizontal field of view


@dataclass
class Frame:
    rgb: np.ndarray  # [H,W,3] float32 in [0,1]
    cls: np.ndarray  # [H,W] uint8 pixel class (facade.SKY ... facade.MARKING)
    key: np.ndarray  # [H,W] float32: window hash in [0,1), 2 for signs, -1 elsewhere
    depth: np.ndarray  # [H,W] float32 metres (inf for sky)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2-D cross product a × b (positive when b lies counter-clockwise of a)."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _nearest_hits(
    world: World, cam: Camera, dirs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance t [K,W], segment [K,W] and position s in [0,1] along it, nearest first."""
    c = np.array([cam.x, cam.y])
    p0, p1 = world.seg_p0, world.seg_p1
    e = p1 - p0
    # Cull: only faces whose outer side the camera is on, within RADIUS of the camera.
    facing = np.einsum("sd,sd->s", c - p0, world.seg_normal) > 0
    rel = np.clip(np.einsum("sd,sd->s", c - p0, e) / np.einsum("sd,sd->s", e, e), 0, 1)
    near = np.linalg.norm(p0 + rel[:, None] * e - c, axis=1) < RADIUS
    # Frustum: drop segments lying wholly outside one of the two side planes of the view
    # (the outermost column rays bound it; the test is conservative, never drops a hit).
    r0, r1 = p0 - c, p1 - c
    left, right = dirs[0], dirs[-1]
    out_l = (_cross(left, r0) > 0) & (_cross(left, r1) > 0)
    out_r = (_cross(right, r0) < 0) & (_cross(right, r1) < 0)
    idx = np.flatnonzero(facing & near & ~out_l & ~out_r)
    width = dirs.shape[0]
    if idx.size == 0:
        inf = np.full((LAYERS, width), np.inf)
        return inf, np.zeros((LAYERS, width), np.int64), np.zeros((LAYERS, width))
    e, w = e[idx], p0[idx] - c  # [S,2]
    # Solve c + t d = p0 + s e for every (column, segment): 2-D cross products.
    denom = dirs[:, 0:1] * e[None, :, 1] - dirs[:, 1:2] * e[None, :, 0]  # [W,S]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[None, :, 0] * e[None, :, 1] - w[None, :, 1] * e[None, :, 0]) / denom
        s = (w[None, :, 0] * dirs[:, 1:2] - w[None, :, 1] * dirs[:, 0:1]) / denom
    ok = (np.abs(denom) > 1e-12) & (t > 0.05) & (s >= 0) & (s <= 1)
    t = np.where(ok, t, np.inf)
    k = min(LAYERS, idx.size)
    order = np.argsort(t, axis=1, kind="stable")[:, :k]  # [W,k]
    tk = np.take_along_axis(t, order, 1).T
    sk = np.take_along_axis(s, order, 1).T
    segk = idx[order].T
    if k < LAYERS:
        pad = LAYERS - k
        tk = np.vstack([tk, np.full((pad, width), np.inf)])
        sk = np.vstack([sk, np.zeros((pad, width))])
        segk = np.vstack([segk, np.zeros((pad, width), np.int64)])
    return tk, segk, sk


def render(
    world: World, cam: Camera, height: int, width: int, sun_azimuth_deg: float | None = None
) -> Frame:
    """Render one view; deterministic (no randomness inside)."""
    st = world.style
    f = (width / 2) / np.tan(np.radians(cam.fov_deg) / 2)
    xc = np.arange(width) + 0.5 - width / 2
    ang = np.radians(cam.heading_deg) - np.arctan(xc / f)  # image right = clockwise
    dirs = np.stack([np.cos(ang), np.sin(ang)], 1)  # [W,2]
    cos_off = f / np.sqrt(f * f + xc * xc)  # ray length -> depth along the optical axis
    yh = HORIZON * height
    yc = (np.arange(height, dtype=np.float32) + 0.5)[:, None]  # [H,1]

    t, seg, s = _nearest_hits(world, cam, dirs)  # [K,W]
    z = t * cos_off[None, :]
    wall_h = world.b["height"][world.seg_building[seg]]
    with np.errstate(invalid="ignore"):
        top = yh - f * (wall_h - CAM_HEIGHT) / z
        bot = yh + f * CAM_HEIGHT / z
    layer = np.full((height, width), -1, dtype=np.int64)
    for k in range(LAYERS - 1, -1, -1):  # painter's order: far to near
        cover = np.isfinite(z[k])[None, :] & (yc >= top[k][None, :]) & (yc < bot[k][None, :])
        layer[cover] = k

    a = np.clip(yc / yh, 0, 1)[:, :, None]  # 0 at the top, 1 at the horizon
    top_c, hor_c = np.asarray(st.sky_top, np.float32), np.asarray(st.sky_horizon, np.float32)
    rgb = np.ascontiguousarray(np.broadcast_to(top_c * (1 - a) + hor_c * a, (height, width, 3)))
    fog = np.float32(st.fog_distance)

    def hazy(colour: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Haze: blend towards the horizon colour with distance ([N,3], [N])."""
        e = np.exp(-depth / fog)[:, None]
        return colour * e + hor_c * (1 - e)

    cls = np.full((height, width), SKY, dtype=np.uint8)
    key = np.full((height, width), -1.0, np.float32)
    depth = np.full((height, width), np.inf, np.float32)

    sun = np.radians(st.sun_azimuth_deg if sun_azimuth_deg is None else sun_azimuth_deg)
    sun_v = np.array([np.cos(sun), np.sin(sun)])
    for k in range(LAYERS):
        mask = layer == k
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            continue
        # Shade only the bounding box where this layer shows (far layers are small).
        r0, r1 = rows[0], rows[-1] + 1
        cols = np.flatnonzero(mask.any(axis=0))
        sk, zk = seg[k, cols], z[k, cols].astype(np.float32)
        seglen = np.linalg.norm(world.seg_p1[sk] - world.seg_p0[sk], axis=1)
        u = (s[k, cols] * seglen).astype(np.float32)
        v = CAM_HEIGHT + (yh - yc[r0:r1]) * zk[None, :] / f  # height of each pixel [h,w]
        c, kl, kk = shade_facade(world, sk, u, zk, v, f, sun_v)
        m = mask[r0:r1][:, cols]
        r, cc = np.nonzero(m)
        r, cg = r + r0, cols[cc]
        rgb[r, cg], cls[r, cg], key[r, cg] = hazy(c[m], zk[cc]), kl[m], kk[m]
        depth[r, cg] = zk[cc]

    r0 = int(np.floor(yh + 0.5))  # first row whose centre lies below the horizon
    zg = np.float32(f * CAM_HEIGHT) / (yc[r0:] - np.float32(yh))  # ground depth per row [h,1]
    dist = zg / cos_off[None, :].astype(np.float32)  # [h,W]
    gx = cam.x + dist * dirs[None, :, 0].astype(np.float32)
    gy = cam.y + dist * dirs[None, :, 1].astype(np.float32)
    c, kl = shade_ground(world, gx, gy, np.broadcast_to(zg / f, gx.shape))
    m = layer[r0:] < 0
    zm = np.broadcast_to(zg, m.shape)[m]
    rgb[r0:][m], cls[r0:][m], depth[r0:][m] = hazy(c[m], zm), kl[m], zm
    return Frame(rgb, cls, key, depth)
