"""Any folder of images as a descriptor set: the image list, and the names file beside the
descriptors (issue 15: "how do I use a trained model on my own photos?").

``icsa extract --images DIR --out X.npy`` writes row i of ``X.npy`` for the i-th image of
:func:`list_images` and the image's path, relative to DIR, as line i of ``X.txt``;
``icsa retrieve`` reads both back. Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

from icsa.errors import InputError
from icsa.io import atomic_path

# What PIL decodes and photo folders hold; anything else in the folder is left alone.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder`` (recursive, hidden files and folders skipped), as
    '/'-separated paths relative to it, sorted: the row order of the descriptors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--images {folder}: not a folder, expected a folder of images")
    names = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not names:
        raise InputError(
            f"--images {folder}: no images, expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    return names


def names_file(descriptors: str | os.PathLike) -> Path:
    """``X.txt`` beside ``X.npy``."""
    return Path(descriptors).with_suffix(".txt")


def write_names(path: str | os.PathLike, names: list[str]) -> None:
    bad = [n for n in names if "\n" in n or "\r" in n]
    if bad:
        raise InputError(f"image name {bad[0]!r}: holds a line break, expected one line per name")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")


def read_names(path: str | os.PathLike, rows: int) -> list[str]:
    """The names file of a descriptor file with ``rows`` rows; one name per row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"names file {path}: not found, expected the image names `icsa extract --images` "
            "writes beside the descriptors"
        )
    names = path.read_text(encoding="utf-8").splitlines()
    if len(names) != rows:
        raise InputError(f"names file {path}: {len(names)} names, expected {rows} (one per row)")
    return names
