"""Appearance changes between database and query images, and JPEG encoding.

Database images are daytime with a small exposure jitter (Street View). Queries differ as real
queries do: time of day (dusk; night with dark walls, lit windows and lit signs), sun direction,
colour cast, blur, sensor noise, occluders (cars and pedestrians standing on the street, hidden
behind nearer walls) and JPEG quality. All randomness is drawn up front into an
:class:`Appearance`; applying it is a pure function of (frame, appearance), so workers in any
order produce identical bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from icsa.data.synthetic.facade import OCCLUDER, SIGN, SKY, WINDOW, window_hash
from icsa.data.synthetic.render import CAM_HEIGHT, HORIZON, Frame
from icsa.data.synthetic.settings import CitySettings

TIMES = ("day", "dusk", "night")
_SKIES = {  # (top, horizon) sky colours by time of day
    "dusk": ((0.25, 0.2, 0.4), (0.95, 0.55, 0.35)),
    "night": ((0.01, 0.01, 0.04), (0.08, 0.08, 0.14)),
}
_LIGHT = {"dusk": np.array([1.0, 0.86, 0.74]), "night": np.array([0.55, 0.6, 0.85])}  # colour


@dataclass(frozen=True)
class Appearance:
    time: str  # one of TIMES
    ambient: float  # scene light at that time (1 by day, settings.dusk/night_brightness)
    exposure: float  # overall brightness factor
    gain: tuple[float, float, float]  # colour cast
    sun_azimuth_deg: float | None  # None: the city's default sun
    lit_fraction: float  # windows lit at dusk/night
    blur: float  # Gaussian sigma, pixels
    noise: float  # std on the 0..1 scale
    occluders: int
    jpeg_quality: int
    seed: int  # noise pixels and occluder placement


def db_appearance(
    rng: np.random.Generator,
    s: CitySettings,
    sun_azimuth_deg: float | None = None,
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0),
    occluders: int = 0,
) -> Appearance:
    """Daytime; ``sun_azimuth_deg``/``gain``/``occluders`` set a capture time's look (TokyoTM
    role: parked cars and passers-by differ between captures)."""
    exposure = 1.0 + rng.uniform(-s.db_brightness_jitter, s.db_brightness_jitter)
    return Appearance(
        time="day", ambient=1.0, exposure=float(exposure), gain=gain,
        sun_azimuth_deg=sun_azimuth_deg, lit_fraction=0.0, blur=0.0, noise=0.0, occluders=occluders,
        jpeg_quality=s.db_jpeg_quality, seed=int(rng.integers(2**31)),
    )  # fmt: skip


def query_appearance(
    rng: np.random.Generator, s: CitySettings, sun_azimuth_deg: float, time: str | None = None
) -> Appearance:
    """A random query appearance; ``time`` forces the time of day (capture times of TokyoTM)."""
    if time is None:
        r = rng.random()
        night, dusk = r < s.night_fraction, r < s.night_fraction + s.dusk_fraction
        time = "night" if night else "dusk" if dusk else "day"
    gain = np.clip(1.0 + rng.normal(0.0, s.color_cast, 3), 0.6, 1.4)
    ambient = {"day": 1.0, "dusk": s.dusk_brightness, "night": s.night_brightness}[time]
    jitter = s.query_exposure_jitter
    return Appearance(
        time=time,
        ambient=float(ambient),
        exposure=float(rng.uniform(1.0 - jitter, 1.0 + jitter)),
        gain=(float(gain[0]), float(gain[1]), float(gain[2])),
        sun_azimuth_deg=float(sun_azimuth_deg + rng.uniform(-s.sun_jitter_deg, s.sun_jitter_deg)),
        lit_fraction=float(rng.uniform(0.2, 0.6)),
        blur=float(rng.uniform(0.0, s.blur_max)),
        noise=float(rng.uniform(0.0, s.noise_max)),
        occluders=int(rng.integers(0, s.occluders_max + 1)),
        jpeg_quality=int(rng.integers(s.query_jpeg_range[0], s.query_jpeg_range[1] + 1)),
        seed=int(rng.integers(2**31)),
    )


def _draw_occluders(frame: Frame, count: int, fov_deg: float, rng: np.random.Generator) -> None:
    """Cars (boxes with a dark window band) and pedestrians (thin upright boxes) on the street.

    Each stands at a random distance; pixels where the scene is nearer stay visible.
    """
    h, w = frame.cls.shape
    f = (w / 2) / np.tan(np.radians(fov_deg) / 2)
    yh = HORIZON * h
    rows = np.arange(h)[:, None] + 0.5
    cols = np.arange(w)[None, :] + 0.5
    for _ in range(count):
        d = rng.uniform(4.0, 35.0)
        car = rng.random() < 0.6
        size_w, size_h = (rng.uniform(1.8, 4.5), rng.uniform(1.3, 1.6)) if car else (0.5, 1.7)
        cx = rng.uniform(0, w)
        bottom = yh + f * CAM_HEIGHT / d
        top = yh - f * (size_h - CAM_HEIGHT) / d
        half = f * size_w / (2 * d)
        inside = (rows >= top) & (rows < bottom) & (np.abs(cols - cx) < half) & (frame.depth > d)
        colour = rng.uniform(0.05, 0.9, 3)
        frame.rgb[inside] = colour
        if car:  # a window band in the upper third reads as a car, not a box
            band = inside & (rows < top + (bottom - top) * 0.35)
            frame.rgb[band] = colour * 0.3
        frame.cls[inside] = OCCLUDER
        frame.key[inside] = -1.0


def apply_appearance(frame: Frame, app: Appearance, fov_deg: float) -> np.ndarray:
    """Apply ``app`` to a rendered frame (modified in place) → uint8 image [H,W,3]."""
    rng = np.random.default_rng(app.seed)
    _draw_occluders(frame, app.occluders, fov_deg, rng)
    rgb = frame.rgb
    if app.time != "day":
        lit_frac = app.lit_fraction * (0.5 if app.time == "dusk" else 1.0)
        rgb = rgb * (app.ambient * _LIGHT[app.time]).astype(np.float32)
        top, hor = (np.asarray(c, np.float32) for c in _SKIES[app.time])
        a = np.clip((np.arange(rgb.shape[0]) + 0.5) / (HORIZON * rgb.shape[0]), 0, 1)[:, None, None]
        rgb = np.where((frame.cls == SKY)[..., None], top * (1 - a) + hor * a, rgb)
        # Lit windows: a stable subset (the window hash), with a per-image shuffle of which.
        lit = (frame.cls == WINDOW) & (np.mod(frame.key + app.seed * 1e-6, 1.0) < lit_frac)
        warm = np.array([1.0, 0.82, 0.5], np.float32)
        glow = 0.6 + 0.4 * window_hash(np.floor(frame.key * 1e6).astype(np.int64))
        rgb[lit] = warm * glow[lit][:, None].astype(np.float32)
        signs = frame.cls == SIGN
        rgb[signs] = frame.rgb[signs] * 0.9  # signs are illuminated
    rgb = rgb * np.float32(app.exposure) * np.asarray(app.gain, np.float32)
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    if app.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(radius=app.blur))
    out = np.asarray(img, dtype=np.float32)
    if app.noise > 0:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(app.noise * 255)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG with fixed settings and no metadata: equal pixels give equal bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer,
        format="JPEG",
        quality=int(quality),
        subsampling=2,
        optimize=False,
        progressive=False,
    )
    return buffer.getvalue()
