"""Every size and difficulty knob of the synthetic city, in one frozen dataclass.

The defaults give the embedded default task (docs/architecture.md "Data"): about 1,000 database
+ 1,000 training queries, a validation split, 600 database + 400 test queries at 120×160, and a
second city in the TokyoTM role: a time machine whose places are captured in several years and
whose queries are database images (``time_machine.py``). They were tuned so that a randomly
initialised VGG16+NetVLAD reaches a test Recall@1 inside 10–50 % (measured 19–21 % at seed 0,
chance 7.7 %) while 8×6-pixel thumbnails reach 14.5 % (``benchmarks/results/synthetic.md``): the
task is neither noise nor trivial."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from icsa.errors import InputError
from icsa.records import record_from_dict

MAX_CAPTURE_TIMES = 4  # capture years of the TokyoTM-role city (time_machine.CAPTURE_YEARS)


@dataclass(frozen=True)
class CitySettings:
    # --- sizes -----------------------------------------------------------------------------
    image_height: int = 120
    image_width: int = 160
    train_db: int = 1000
    train_q: int = 1000
    val_db: int = 500
    val_q: int = 300
    test_db: int = 600
    test_q: int = 400
    tokyo_train_db: int = 400
    tokyo_train_q: int = 200
    tokyo_val_db: int = 200
    tokyo_val_q: int = 100
    # --- database sampling (Pittsburgh-like: a place every few metres, several yaws) ----------
    place_spacing: float = 6.0  # metres between consecutive places along a street
    headings_per_place: int = 4  # evenly spaced yaws per place, the first along the street
    db_fov_deg: float = 70.0
    db_brightness_jitter: float = 0.05  # relative exposure change between database images
    db_jpeg_quality: int = 90
    # --- query poses -----------------------------------------------------------------------------
    query_offset_max: float = 10.0  # metres from the anchor place (along + across the street)
    query_heading_jitter_deg: float = 20.0  # around one of the database yaws
    query_fov_range: tuple[float, float] = (55.0, 85.0)
    # --- query appearance ---------------------------------------------------------------------
    night_fraction: float = 0.15
    dusk_fraction: float = 0.25
    night_brightness: float = 0.13  # scene light at night (lit windows and signs stay bright)
    dusk_brightness: float = 0.7
    query_exposure_jitter: float = 0.15  # relative exposure change, uniform in [-x, x]
    sun_jitter_deg: float = 60.0  # daytime queries: the sun moves by up to this much
    color_cast: float = 0.12  # std of the per-channel gain
    blur_max: float = 1.2  # Gaussian blur sigma in pixels, uniform in [0, blur_max]
    noise_max: float = 0.04  # pixel noise std (0..1 scale), uniform in [0, noise_max]
    occluders_max: int = 4  # cars and pedestrians per query, uniform in [0, occluders_max]
    query_jpeg_range: tuple[int, int] = (40, 90)
    # --- the world --------------------------------------------------------------------------
    template_count: int = 8  # facade templates shared by all buildings of a city
    tint_jitter: float = 0.10  # per-building colour variation around the template
    sign_fraction: float = 0.25  # buildings with a distinctive sign board
    split_gap: float = 40.0  # metres of unvisited street between splits (> 25 m threshold)
    # --- the TokyoTM role: a time machine (time_machine.py) -----------------------------------
    tokyo_capture_times: int = 3  # captures ("years") of each place in the database, 2..4
    tokyo_capture_offset: float = 3.0  # metres: captures of one place lie within this radius
    tokyo_change_fraction: float = 0.25  # buildings repainted / signs changed between years
    tokyo_occluders_max: int = 2  # parked cars and passers-by per database image, 0..this
    # --- the Tokyo 24/7 role (tokyo247.py): off unless both sizes are set -------------------
    tokyo247_db: int = 0  # database images, whole panoramas of 12 views (rounded up)
    tokyo247_q: int = 0  # queries: a third each by day, at sunset and at night
    # --- the GSV-Cities role (gsv.py): off unless gsv_places is set ---------------------------
    gsv_places: int = 0  # places, dealt to two cities; each seen gsv_images_per_place times
    gsv_images_per_place: int = 4  # GSV-Cities' img_per_place default

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            low = (
                0
                if field.name.endswith("occluders_max")
                or field.name.startswith("tokyo247")
                or field.name == "gsv_places"
                else 1
            )
            bad = not isinstance(value, int) or isinstance(value, bool) or value < low
            if field.type == "int" and bad:
                raise InputError(
                    f"CitySettings.{field.name}: got {value!r}, expected an integer >= {low}"
                )
        for name in ("night_fraction", "dusk_fraction", "sign_fraction", "tokyo_change_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"CitySettings.{name}: got {value!r}, expected 0 <= x <= 1")
        if self.night_fraction + self.dusk_fraction > 1.0:
            raise InputError(
                f"CitySettings.night_fraction + dusk_fraction: got "
                f"{self.night_fraction + self.dusk_fraction}, expected <= 1"
            )
        if self.place_spacing <= 0 or self.query_offset_max < 0:
            raise InputError(
                f"CitySettings.place_spacing/query_offset_max: got {self.place_spacing}/"
                f"{self.query_offset_max}, expected spacing > 0 and offset >= 0"
            )
        if not 2 <= self.tokyo_capture_times <= MAX_CAPTURE_TIMES:
            raise InputError(
                f"CitySettings.tokyo_capture_times: got {self.tokyo_capture_times}, expected "
                f"2..{MAX_CAPTURE_TIMES} (a time machine needs another capture of each place)"
            )
        if not 0.0 <= self.tokyo_capture_offset <= 10.0:
            raise InputError(
                f"CitySettings.tokyo_capture_offset: got {self.tokyo_capture_offset}, expected "
                "0..10 metres (captures of one place stay well inside the 25 m radius)"
            )
        for split in ("train", "val"):
            n_db, n_q = getattr(self, f"tokyo_{split}_db"), getattr(self, f"tokyo_{split}_q")
            if n_q > n_db:
                raise InputError(
                    f"CitySettings.tokyo_{split}_q: got {n_q}, expected <= tokyo_{split}_db = "
                    f"{n_db} (TokyoTM's queries are images of its database)"
                )
        if (self.tokyo247_db == 0) != (self.tokyo247_q == 0):
            raise InputError(
                f"CitySettings.tokyo247_db/tokyo247_q: got {self.tokyo247_db}/{self.tokyo247_q}; "
                "expected both 0 (no Tokyo 24/7 role) or both positive"
            )
        if self.gsv_images_per_place < 2:
            raise InputError(
                f"CitySettings.gsv_images_per_place: got {self.gsv_images_per_place}, expected "
                ">= 2 (a place needs a positive pair)"
            )
        if self.split_gap <= 25.0:
            raise InputError(
                f"CitySettings.split_gap: got {self.split_gap}, expected > 25 (the positive "
                "radius), or splits would share places"
            )
        lo, hi = self.query_fov_range
        if not 10.0 <= lo <= hi <= 150.0 or not 10.0 <= self.db_fov_deg <= 150.0:
            raise InputError(
                f"CitySettings field of view: got db {self.db_fov_deg}, queries {lo}..{hi}; "
                "expected degrees in [10, 150] with low <= high"
            )
        qlo, qhi = self.query_jpeg_range
        if not 1 <= qlo <= qhi <= 100 or not 1 <= self.db_jpeg_quality <= 100:
            raise InputError(
                f"CitySettings JPEG quality: got db {self.db_jpeg_quality}, queries {qlo}..{qhi};"
                " expected 1..100 with low <= high"
            )

    def to_dict(self) -> dict[str, Any]:
        """Every setting, less the Tokyo 24/7 and GSV-Cities roles' while they are off (so that
        the manifests of cities without them stay byte-identical to those written before them)."""
        off = {k for k in ("tokyo247_db", "tokyo247_q") if getattr(self, k) == 0}
        if not self.gsv_places:
            off |= {"gsv_places", "gsv_images_per_place"}
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
            if k not in off
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CitySettings:
        """Build settings from a config mapping; unknown keys are an error (typos must not pass)."""
        return record_from_dict(cls, values, "synthetic city settings")
