from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from magneto.errors import ImageError, ImageTooLargeError
from magneto.images import IMAGENET_MEAN, IMAGENET_STD, decode_image, make_transform


def _encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    data = _encode(image, "JPEG", exif=exif, quality=95)
    array = decode_image(data)
    assert array.shape == (60, 20, 3)  # width and height swapped
    top = array[:8].reshape(-1, 3).mean(0)
    assert top[2] > 150 and top[0] < 100  # the blue strip is now at the top


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "I", "F", "1", "LA", "RGBA"])
def test_every_mode_becomes_rgb_uint8(mode):
    image = Image.new("RGB", (16, 12), (10, 120, 250)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    array = decode_image(_encode(image, fmt))
    assert array.shape == (12, 16, 3)
    assert array.dtype == np.uint8


def test_transparency_becomes_white_not_black():
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    array = decode_image(_encode(image))
    assert (array == 255).all()
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert (decode_image(_encode(palette)) == 255).all()


def test_pixel_limit_guards_against_decompression_bombs():
    data = _encode(Image.new("L", (300, 300)))
    with pytest.raises(ImageTooLargeError, match="more than the limit of 50000"):
        decode_image(data, max_pixels=50_000)
    assert decode_image(data, max_pixels=90_000).shape == (300, 300, 3)


def test_truncated_and_non_images_raise():
    data = _encode(Image.new("RGB", (256, 256), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match="not a recognised image"):
        decode_image(b"definitely not an image")
    with pytest.raises(ImageError, match="not found"):
        decode_image("/nonexistent/file.jpg")


def test_jpeg_draft_keeps_at_least_the_requested_side():
    data = _encode(Image.new("RGB", (1600, 1200), (9, 9, 9)), "JPEG")
    array = decode_image(data, min_side=224)
    assert min(array.shape[:2]) >= 224
    assert array.shape[:2] == (300, 400)  # decoded at 1/4 scale, not 1600x1200


@pytest.mark.parametrize("size", [112, 224])
def test_eval_pipeline_is_deterministic_and_normalised(size):
    array = np.full((300, 200, 3), 128, dtype=np.uint8)
    transform = make_transform(size, train=False)
    a, b = transform(array), transform(array)
    assert a.shape == (3, size, size) and a.dtype == torch.float32
    assert torch.equal(a, b)
    expected = (128 / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(a.mean((1, 2)).numpy(), expected, atol=1e-3)


def test_train_pipeline_is_random_with_the_right_shape():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
    transform = make_transform(112, train=True)
    outs = [transform(array) for _ in range(4)]
    assert all(o.shape == (3, 112, 112) for o in outs)
    assert not all(torch.equal(outs[0], o) for o in outs[1:])
