"""Image decoding and the train/eval pipelines.

Decoding is strict: a file that is not an image, is truncated, or has more pixels than the
limit raises :class:`ImageError` instead of being silently replaced.

Decoding is also frugal with memory, since a small file can describe a huge image (a 90 KB
PNG holds 6300x6300 16-bit pixels). The size is read from the header before any pixel is
decoded; JPEGs are decoded at a reduced DCT scale when the model only needs a small input;
other images are box-reduced (``Image.reduce``) to at least twice the needed side right after
decoding, before any conversion; 16/32-bit images become 8-bit strip by strip, never through
a float copy of the whole image; and the decodes of one process share a memory budget
(:data:`DECODE_BUDGET`), so many large images at once take turns instead of adding up.
Images whose shorter side is under four times the needed side are not reduced, so the model
sees exactly what a full decode gives.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from magneto.data.decode_budget import DECODE_BUDGET
from magneto.data.text_files import file_problem
from magneto.errors import ImageAspectError, ImageError, ImageNotFoundError, ImageTooLargeError

# albumentations checks PyPI for a newer version on import unless told not to; our machines
# are offline and a network call at import time would only slow every start-up down.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MAX_PIXELS = 50_000_000
# The longest side may be this many times the shortest: a wide panorama, not a strip. The
# shorter side is scaled to the model's input, so this also bounds the resized image: at most
# MAX_ASPECT_RATIO * input_size**2 pixels, whatever the file says.
MAX_ASPECT_RATIO = 30
MAX_IMAGE_FILE_BYTES = 256 * 1024 * 1024  # an image file larger than this is not read

ImageSource = bytes | str | Path | BinaryIO


HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_STRIP_PIXELS = 1 << 18  # pixels per strip when a 16/32-bit image is stretched to 8 bits
_LOADED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_ORIENTATION = {  # EXIF orientation -> the transpose that shows the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# File suffixes read as images where a folder is scanned (predict, calibration).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def check_image_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """The bounds every image meets before any pixel is decoded or resized (the one place the
    service, predict, evaluate, training and the bulk job check them)."""
    if width <= 0 or height <= 0:
        raise ImageError("image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image has {width}x{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels}"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageAspectError(
            f"image is {width}x{height}, an aspect ratio of {ratio:.0f}:1, beyond the "
            f"{MAX_ASPECT_RATIO}:1 an image is scored at"
        )


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    elif isinstance(source, str | Path):  # never read what is not a regular file of sane size
        problem = file_problem(source, MAX_IMAGE_FILE_BYTES)
        if problem == "not found":
            raise ImageNotFoundError(f"image file not found: {source}")
        if problem is not None and "more than the limit" in problem:
            raise ImageTooLargeError(f"image file {source} {problem}")
        if problem is not None:
            raise ImageError(f"image file {source} {problem}")
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


def _stretch_to_l(image: Image.Image) -> Image.Image:
    """A 16/32-bit image as 8-bit "L", its value range stretched to 0..255.

    Strip by strip: the float copy is of 256K pixels at a time, never of the whole image; the
    numbers are the same as stretching the whole image at once.
    """
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // width)
    strips = [(top, min(height, top + rows)) for top in range(0, height, rows)]

    def values(top: int, bottom: int) -> np.ndarray:
        return np.asarray(image.crop((0, top, width, bottom)), dtype=np.float64)

    low, high = np.inf, -np.inf
    for top, bottom in strips:
        strip = values(top, bottom)
        finite = strip[np.isfinite(strip)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    out = np.zeros((height, width), dtype=np.uint8)
    if high > low:
        for top, bottom in strips:
            strip = np.clip(np.nan_to_num(values(top, bottom), nan=low), low, high)
            out[top:bottom] = ((strip - low) / (high - low) * 255.0).astype(np.uint8)
    return Image.fromarray(out, mode="L")


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
    if image.mode in HIGH_BIT_MODES:
        return _stretch_to_l(image).convert("RGB")
    return image.convert("RGB")


def reduce_factor(size: tuple[int, int], min_side: int | None) -> int:
    """The box-reduction factor that keeps both sides at least ``2 * min_side`` (1: none).

    Twice the needed side leaves the final area resize real work to do, so the result stays
    close to a resize from full resolution.
    """
    if not min_side:
        return 1
    return max(1, min(size) // (2 * min_side))


def _reducible(image: Image.Image) -> Image.Image:
    """The image in a mode ``Image.reduce`` accepts (8 bits per channel, no palette)."""
    if image.mode in HIGH_BIT_MODES:
        return _stretch_to_l(image)
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "1":
        return image.convert("L")
    return image


def decode_cost(mode: str, size: tuple[int, int], factor: int) -> int:
    """Bytes a decode holds at its peak: the decoded image plus its full-size conversions
    (one 8-bit copy, or RGBA for a palette, when it is reduced; when it is not: RGB, the array
    and its copy)."""
    if factor > 1:
        extra = 4 if mode == "P" else 1 if mode in HIGH_BIT_MODES or mode == "1" else 0
    else:
        extra = 10
    return size[0] * size[1] * (_LOADED_BYTES.get(mode, 4) + extra)


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The transpose that the EXIF orientation asks for (read before reducing drops it)."""
    return _ORIENTATION.get(image.getexif().get(0x0112, 1))


def image_size(source: ImageSource) -> tuple[int, int] | None:
    """Width and height from the header alone (no pixel decoded); None if it is unreadable.

    A stream is left where it was, so that it can still be decoded afterwards.
    """
    stream = source if not isinstance(source, (bytes, str, Path)) else None
    start = stream.tell() if stream is not None else None
    try:
        with _open(source) as image:
            return image.size
    except ImageError:
        return None
    finally:
        if stream is not None and start is not None:
            stream.seek(start)


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
) -> np.ndarray:
    """Decode an image to an ``(H, W, 3)`` uint8 RGB array.

    ``min_side``: the smallest side the caller needs; JPEGs are then decoded at the smallest
    DCT scale that still keeps both sides at least this large, and an image whose shorter
    side is ``4 * min_side`` or more is box-reduced, keeping both sides ``2 * min_side`` or more.
    """
    image = _open(source)
    try:
        check_image_size(*image.size, max_pixels)
        if min_side and image.format == "JPEG":
            # draft() keeps the size >= the requested one; EXIF rotation does not change area.
            image.draft("RGB", (min_side, min_side))
        factor = reduce_factor(image.size, min_side)
        with DECODE_BUDGET.hold(decode_cost(image.mode, image.size, factor)):
            try:
                return _decoded_rgb(image, factor)
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageError(f"corrupt or truncated image: {exc}") from None
            finally:
                image.close()  # frees the full-size pixels while the budget is still held
    finally:
        image.close()


def _decoded_rgb(image: Image.Image, factor: int) -> np.ndarray:
    """Decode, reduce by ``factor``, turn upright and convert to an RGB array."""
    image.load()
    turn = _orientation(image)
    if factor > 1:
        image = _reducible(image).reduce(factor)
    if turn is not None:
        image = image.transpose(turn)
    return np.asarray(_to_rgb(image), dtype=np.uint8).copy()


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
