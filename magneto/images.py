"""Image decoding and the train/eval pipelines.

Decoding is strict: a file that is not an image, is truncated, or has more pixels than the
limit raises :class:`ImageError` instead of being silently replaced. JPEGs are decoded at a
reduced DCT scale when the model only needs a small input, which is far cheaper than a full
decode followed by a resize.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from magneto.errors import ImageError, ImageNotFoundError, ImageTooLargeError

# albumentations checks PyPI for a newer version on import unless told not to; our machines
# are offline and a network call at import time would only slow every start-up down.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MAX_PIXELS = 50_000_000

ImageSource = bytes | str | Path | BinaryIO


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # Our own pixel limit replaces Pillow's warning-then-error bomb check.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except FileNotFoundError:
        raise ImageNotFoundError(f"image file not found: {source}") from None
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from None
    except OSError as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparent areas become white, not black."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
) -> np.ndarray:
    """Decode an image to an ``(H, W, 3)`` uint8 RGB array.

    ``min_side``: the smallest side the caller needs; JPEGs are then decoded at the smallest
    DCT scale that still keeps both sides at least this large.
    """
    image = _open(source)
    try:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError("image has no pixels")
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"image has {width}x{height} = {width * height} pixels, more than the limit of "
                f"{max_pixels}"
            )
        if min_side and image.format == "JPEG":
            # draft() keeps the size >= the requested one; EXIF rotation does not change area.
            image.draft("RGB", (min_side, min_side))
        try:
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb(image)
            return np.asarray(rgb, dtype=np.uint8).copy()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"corrupt or truncated image: {exc}") from None
    finally:
        image.close()


def train_pipeline(input_size: int) -> A.Compose:
    """Training augmentation: random resized crop, flip, colour and AutoAugment-like ops."""
    auto_augment_like = A.OneOf(
        [
            A.Posterize(num_bits=(4, 8)),
            A.Solarize(threshold_range=(0.5, 1.0)),
            A.Equalize(),
            A.AutoContrast(),
            A.Sharpen(alpha=(0.1, 0.4)),
            A.Affine(rotate=(-20, 20), shear=(-10, 10), fill=128),
            A.Affine(translate_percent=(-0.15, 0.15), fill=128),
            A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3),
        ],
        p=0.8,
    )
    return A.Compose(
        [
            A.RandomResizedCrop(size=(input_size, input_size), scale=(0.3, 1.0)),
            A.HorizontalFlip(p=0.5),
            auto_augment_like,
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
            A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            ToTensorV2(),
        ]
    )


def eval_pipeline(input_size: int) -> A.Compose:
    """Deterministic evaluation pipeline: shorter side to ``input_size``, then centre crop."""
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=input_size, interpolation=cv2.INTER_AREA),
            A.CenterCrop(height=input_size, width=input_size),
            A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            ToTensorV2(),
        ]
    )


class ImageTransform:
    """RGB array -> normalised ``(3, S, S)`` float tensor; random draws can be seeded per call.

    Seeding per call (from seed, epoch and item index) makes image augmentation independent
    of worker processes and of how far a run got, so an interrupted run resumes exactly.
    """

    def __init__(self, input_size: int, *, train: bool) -> None:
        self.input_size = input_size
        self.train = train
        self.pipeline = train_pipeline(input_size) if train else eval_pipeline(input_size)

    def __call__(self, image: np.ndarray, seed: int | None = None):
        if seed is not None and self.train:
            self.pipeline.set_random_seed(seed)
        return self.pipeline(image=image)["image"]


def make_transform(input_size: int, *, train: bool) -> ImageTransform:
    return ImageTransform(input_size, train=train)


def decode_hint(input_size: int, *, train: bool) -> int:
    """Smallest side worth decoding: random crops may zoom in, so keep twice the input there."""
    return input_size * 2 if train else input_size
