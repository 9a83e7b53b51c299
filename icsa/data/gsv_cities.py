"""GSV-Cities (Ali-bey et al., Neurocomputing 2022) in its own layout: places with ids, no queries.

amaralibey/gsv-cities' ``dataloaders/GSVCitiesDataset.py`` reads

    Dataframes/<city>.csv   columns place_id, year, month, northdeg, city_id, lat, lon, panoid
    Images/<city_id>/<city_id>_<place_id:07>_<year:04>_<month:02>_<northdeg:03>_<lat>_<lon>_<panoid>.jpg

(``get_img_name``: the numbers zero-padded, lat and lon as Python prints the floats). It offsets
each city's place ids by the city's index × 10^5 so that place 13 of two cities are two places,
and keeps the places with at least ``min_img_per_place`` images. Here split ``train`` is every
city of ``Dataframes/`` in name order, each image a database row labelled with its place
(:attr:`GsvCities.labels`, unique per city and place id, so no offset can collide). GSV-Cities
has no queries and no validation split: it trains the multisimilarity regime only, validating
on another dataset's split (config ``validation``; gsv-cities validates on Pitts30k-val and
MSLS-val). Positions are each image's lat/lon in UTM metres of its own zone
(:func:`utm_from_latlon`), for reports: places come from the ids, never from distances.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icsa.data.dbstruct import DbStruct
from icsa.errors import InputError

SPLIT = "train"
DATAFRAMES = "Dataframes"
IMAGES = "Images"
COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")
POS_DIST_THR = 25.0  # the dbStruct's radii (unused by place-grouped training)
TRAIN_POS_DIST_THR = 10.0
_SOURCE = "GSV-Cities comes from amaralibey/gsv-cities (README: the download form)"


@dataclass(frozen=True)
class GsvImage:
    """One row of a city's dataframe."""

    place_id: int
    year: int
    month: int
    northdeg: int
    city_id: str
    lat: float
    lon: float
    panoid: str

    def name(self) -> str:
        """The image's path under ``Images/``, as gsv-cities' ``get_img_name`` spells it."""
        stem = "_".join([
            self.city_id, f"{self.place_id:07d}", f"{self.year:04d}", f"{self.month:02d}",
            f"{self.northdeg:03d}", str(self.lat), str(self.lon), self.panoid,
        ])  # fmt: skip
        return f"{self.city_id}/{stem}.jpg"


@dataclass(frozen=True)
class GsvCities:
    """The ``train`` split: image paths relative to ``Images/``, a place label per image
    (0, 1, … in city then place-id order) and the cities in label order."""

    db: DbStruct
    labels: np.ndarray  # int64 [num_db]
    cities: tuple[str, ...]


def city_frames(root: Path) -> list[Path]:
    """The cities' dataframes, in name order (none when the folder is missing)."""
    folder = root / DATAFRAMES
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


def _int(value: str, column: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{where}: {column} = {value!r}, expected an integer") from None


def _float(value: str, column: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{where}: {column} = {value!r}, expected a number") from None


def read_city(csv_path: Path) -> list[GsvImage]:
    """Every row of one city's dataframe; InputError naming the file, row and column."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"{csv_path}: columns {reader.fieldnames}, expected {list(COLUMNS)} (missing "
                f"{missing}; gsv-cities' Dataframes/<city>.csv)"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path}, line {line}"
            image = GsvImage(
                place_id=_int(row["place_id"], "place_id", where),
                year=_int(row["year"], "year", where),
                month=_int(row["month"], "month", where),
                northdeg=_int(row["northdeg"], "northdeg", where),
                city_id=row["city_id"],
                lat=_float(row["lat"], "lat", where),
                lon=_float(row["lon"], "lon", where),
                panoid=row["panoid"],
            )
            if image.place_id < 0 or not 1 <= image.month <= 12:
                raise InputError(
                    f"{where}: place_id {image.place_id}, month {image.month}; expected a "
                    "place id >= 0 and a month 1-12"
                )
            if not (-90 <= image.lat <= 90 and -180 <= image.lon <= 180):
                raise InputError(f"{where}: lat/lon {image.lat}, {image.lon} is not on Earth")
            rows.append(image)
    return rows


def read_gsv_cities(root: str | Path) -> GsvCities:
    """The ``train`` split of a GSV-Cities folder: every city's images, sorted by (city, place
    id, name), labelled by place."""
    root = Path(root)
    frames = city_frames(root)
    if not frames:
        raise InputError(
            f"{root / DATAFRAMES}: no <city>.csv; expected the GSV-Cities layout "
            f"({DATAFRAMES}/<city>.csv and {IMAGES}/<city>/…jpg, icsa/data/gsv_cities.py). "
            f"{_SOURCE}"
        )
    keyed = []
    for city_index, csv_path in enumerate(frames):
        for image in read_city(csv_path):
            keyed.append((city_index, image.place_id, image.name(), image))
    if not keyed:
        raise InputError(f"{root / DATAFRAMES}: the dataframes hold no image row")
    keyed.sort(key=lambda k: k[:3])
    names = [k[2] for k in keyed]
    # Sorted by (city, place, name), so a name listed twice sits next to itself: one pass.
    twice = next((a for a, b in zip(names, names[1:]) if a == b), None)
    if twice is not None:
        raise InputError(f"{root / DATAFRAMES}: image {twice!r} is listed twice")
    pairs = np.array([k[:2] for k in keyed], dtype=np.int64)
    _, labels = np.unique(pairs, axis=0, return_inverse=True)
    images = [k[3] for k in keyed]
    utm = utm_from_latlon(np.array([i.lat for i in images]), np.array([i.lon for i in images]))
    db = DbStruct.from_lists(
        SPLIT, names, utm, [], np.zeros((0, 2)), POS_DIST_THR, TRAIN_POS_DIST_THR
    )
    return GsvCities(db, labels.reshape(-1).astype(np.int64), tuple(f.stem for f in frames))


def utm_from_latlon(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """WGS84 latitude/longitude (degrees) → UTM easting/northing (metres) in each point's own
    zone, by the series of Snyder, "Map Projections — A Working Manual" (USGS PP 1395, 1987,
    eqs. 8-9 to 8-10), as UTM's definition uses them near a zone. [N] + [N] → [N, 2]."""
    a, f, k0 = 6378137.0, 1 / 298.257223563, 0.9996
    e2 = f * (2 - f)
    ep2 = e2 / (1 - e2)
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    zone = np.floor((lon + 180) / 6).astype(np.int64) % 60 + 1
    phi = np.radians(lat)
    lam0 = np.radians((zone - 1) * 6 - 180 + 3)
    n = a / np.sqrt(1 - e2 * np.sin(phi) ** 2)
    t = np.tan(phi) ** 2
    c = ep2 * np.cos(phi) ** 2
    big_a = np.cos(phi) * (np.radians(lon) - lam0)
    m = a * (
        (1 - e2 / 4 - 3 * e2**2 / 64 - 5 * e2**3 / 256) * phi
        - (3 * e2 / 8 + 3 * e2**2 / 32 + 45 * e2**3 / 1024) * np.sin(2 * phi)
        + (15 * e2**2 / 256 + 45 * e2**3 / 1024) * np.sin(4 * phi)
        - (35 * e2**3 / 3072) * np.sin(6 * phi)
    )
    east = 500000.0 + k0 * n * (
        big_a + (1 - t + c) * big_a**3 / 6
        + (5 - 18 * t + t**2 + 72 * c - 58 * ep2) * big_a**5 / 120
    )  # fmt: skip
    north = k0 * (m + n * np.tan(phi) * (
        big_a**2 / 2 + (5 - t + 9 * c + 4 * c**2) * big_a**4 / 24
        + (61 - 58 * t + t**2 + 600 * c - 330 * ep2) * big_a**6 / 720
    ))  # fmt: skip
    north = np.where(lat < 0, north + 10_000_000.0, north)  # southern hemisphere false northing
    return np.stack([east, north], axis=1)


def write_city(csv_path: Path, rows: list[GsvImage]) -> None:
    """One city's dataframe in gsv-cities' column order (the synthetic role writes it)."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.place_id, r.year, r.month, r.northdeg, r.city_id, str(r.lat),
                             str(r.lon), r.panoid])  # fmt: skip
