from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from magneto.data import images
from magneto.data.decode_budget import DecodeBudget
from magneto.data.images import IMAGENET_MEAN, IMAGENET_STD, decode_image, make_transform
from magneto.errors import ImageError, ImageTooLargeError
from magneto.infer.requests import header_pixels


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


def _old_stretch(image: Image.Image) -> np.ndarray:
    """The former whole-image float64 stretch, kept here as the reference."""
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    return ((array - low) / (high - low) * 255.0).astype(np.uint8)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_bit_images_stretch_strip_by_strip_like_the_whole_image(mode, monkeypatch):
    monkeypatch.setattr(images, "_STRIP_PIXELS", 50)  # many strips, one row or less each
    rng = np.random.default_rng(3)
    values = rng.integers(300, 4000, (37, 23))
    image = Image.fromarray(values.astype({"I;16": np.uint16, "I": np.int32}.get(mode, np.float32)))
    fmt = "PNG" if mode == "I;16" else "TIFF"
    array = decode_image(_encode(image, fmt))
    assert np.array_equal(array[..., 0], _old_stretch(image))
    assert array.min() == 0 and array.max() == 255  # 300..4000 spread over the 8-bit range


def test_sixteen_bit_values_map_to_the_full_range():
    ramp = np.linspace(0, 65535, 64).astype(np.uint16)[None].repeat(4, 0)
    array = decode_image(_encode(Image.fromarray(ramp)))[0, :, 0]
    assert array[0] == 0 and array[-1] == 255
    assert (np.diff(array.astype(int)) >= 0).all()


def test_small_images_are_not_reduced_so_the_model_input_is_unchanged():
    rng = np.random.default_rng(4)
    image = Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8))
    data = _encode(image)
    assert images.reduce_factor((420, 300), 112) == 1  # shorter side under 4 x 112
    assert np.array_equal(decode_image(data, min_side=112), np.asarray(image))


def test_large_images_are_reduced_early_and_stay_close_to_a_full_resize():
    rng = np.random.default_rng(5)
    coarse = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (2000, 1600), interpolation=cv2.INTER_CUBIC)
    data = _encode(Image.fromarray(smooth))
    reduced = decode_image(data, min_side=112)
    assert images.reduce_factor((2000, 1600), 112) == 7
    assert reduced.shape == (229, 286, 3)  # both sides kept >= 2 x 112
    transform = make_transform(112, train=False)
    full = transform(decode_image(data))
    assert (transform(reduced) - full).abs().mean() < 0.03  # normalised units (~1.7/255)
    assert (transform(reduced[::-1]) - full).abs().mean() > 0.5  # what a wrong image gives


@pytest.mark.parametrize("mode", ["I;16", "P", "1", "RGBA", "LA", "CMYK"])
def test_every_mode_survives_the_reduction(mode):
    image = Image.new("RGB", (900, 500), (10, 120, 250)).convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    array = decode_image(_encode(image, fmt), min_side=50)
    assert array.shape == (100, 180, 3) and array.dtype == np.uint8  # factor 5


def test_exif_orientation_is_applied_to_a_reduced_image():
    image = Image.new("RGB", (1200, 400), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 200, 400))  # blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    array = decode_image(_encode(image, "PNG", exif=exif), min_side=50)
    assert array.shape == (300, 100, 3)  # reduced by 4, then turned upright
    top = array[:20].reshape(-1, 3).mean(0)
    assert top[2] > 200 and top[0] < 50  # the blue band is now at the top


def test_image_size_reads_the_header_only():
    data = _encode(Image.new("I;16", (6000, 5000)))
    assert images.image_size(data[:100]) == (6000, 5000)  # header alone: nothing decoded
    assert images.image_size(b"not an image") is None


def test_decode_budget_lets_large_decodes_take_turns():
    budget = DecodeBudget(100)
    inside: list[int] = []
    seen: list[list[int]] = []  # who was decoding together, at each entry
    lock = threading.Lock()

    def decode(nbytes: int) -> None:
        with budget.hold(nbytes):
            with lock:
                inside.append(nbytes)
                seen.append(list(inside))
            time.sleep(0.02)
            with lock:
                inside.remove(nbytes)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(decode, [60, 60, 30, 500, 10, 60]))
    assert len(seen) == 6
    for together in seen:
        assert together == [500] if 500 in together else sum(together) <= 100
    assert budget.held == 0


def test_header_pixels_counts_without_decoding_and_leaves_streams_usable():
    data = _encode(Image.new("RGB", (640, 480), (5, 6, 7)))
    stream = io.BytesIO(data)
    stream.seek(0)
    assert header_pixels(stream) == 640 * 480
    assert stream.tell() == 0 and decode_image(stream).shape == (480, 640, 3)
    assert header_pixels(data[:64]) == 640 * 480  # the header is enough
    assert header_pixels(np.zeros((30, 20, 3), np.uint8)) == 600
    assert header_pixels(Image.new("L", (7, 3))) == 21
    assert header_pixels(None) == 0 and header_pixels(b"garbage") == 0
