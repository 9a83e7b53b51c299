"""Image datasets for database and query images with the standard NetVLAD input transform.

Images are decoded with PIL, converted to RGB, resized to exactly the configured (H, W) and
normalised with the ImageNet mean and standard deviation that the pretrained backbones expect.
Items are ``(tensor[3, H, W] float32, index)`` so that descriptors land in dbStruct order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from icsa.data.layouts import PlaceSplit
from icsa.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_size(image_size: Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) <= 0:
        raise InputError(f"image_size = {image_size!r}, expected (height, width) > 0")
    return size  # type: ignore[return-value]


def load_image(path: str | os.PathLike, image_size: tuple[int, int] | None) -> torch.Tensor:
    """Decode one image → float32 [3, H, W], resized to ``image_size`` and ImageNet-normalised.

    A file that cannot be read or decoded (missing, truncated, not an image) is an
    :class:`InputError` naming it, wherever it is read (training, k-means, extraction)."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if image_size is not None and img.size != (image_size[1], image_size[0]):
                # PIL's bilinear with antialiasing; PIL takes (width, height).
                img = img.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            tensor = TF.pil_to_tensor(img)  # [3, H, W] uint8
    except (OSError, SyntaxError, ValueError) as err:  # PIL's decode errors
        raise InputError(
            f"{path}: cannot decode the image ({type(err).__name__}: {err}); expected a readable "
            "image file (run `icsa prepare check` on the dataset)"
        ) from err
    tensor = tensor.to(torch.float32).div_(255.0)
    return TF.normalize(tensor, IMAGENET_MEAN, IMAGENET_STD)


class ImageDataset(Dataset):
    """A list of image files as ``(tensor[3, H, W], index)``; picklable for DataLoader workers.

    ``image_size=None`` keeps each image's own size (then batches need equal-sized images).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        image_size: Sequence[int] | None = None,
        name: str = "images",
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.image_size = _check_size(image_size)
        self.name = name

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.paths[index], self.image_size), index

    def __repr__(self) -> str:
        size = "native" if self.image_size is None else "x".join(map(str, self.image_size))
        return f"< {self.name} - #images: {len(self)}; size: {size} >"


def split_datasets(
    split: PlaceSplit, image_size: Sequence[int] | None
) -> tuple[ImageDataset, ImageDataset]:
    """``(database, queries)`` datasets of a split, in dbStruct order."""
    return (
        ImageDataset(split.db_paths, image_size, name=f"{split.name}-db"),
        ImageDataset(split.q_paths, image_size, name=f"{split.name}-q"),
    )
