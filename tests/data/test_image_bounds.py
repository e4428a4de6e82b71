"""Every image either becomes a tensor of the input size or raises the project's own error,
within a bounded cost: a property-based run over sizes (1x1 to extreme strips), modes, bit
depths, formats, truncations and EXIF orientations."""

from __future__ import annotations

import io
import resource
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from magneto.data.images import MAX_ASPECT_RATIO, check_image_size
from magneto.data.vocabulary import Vocabulary
from magneto.errors import ImageAspectError, ImageError, ImageTooLargeError
from magneto.infer.requests import ItemPreparer
from tests.conftest import strip_png

# Pillow warns about the corrupt EXIF and TIFF tags the fuzz makes; refusing them is the test.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SIZE = 32
PREPARER = ItemPreparer(Vocabulary(["sky"]), input_size=SIZE, uses_images=True)
EXAMPLES = 300
LIMIT_S = 2.0  # the most one image may cost to prepare (or to refuse)
seen: dict[str, int] = {"tensor": 0, "error": 0}

sides = st.one_of(
    st.integers(1, 64),
    st.integers(64, 1500),
    st.sampled_from([1, 2, 3, 5000, 20000, 100000]),
)
modes = st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"])
formats = st.sampled_from(["PNG", "JPEG", "TIFF", "GIF", "WEBP", "BMP"])


def encode(width: int, height: int, mode: str, fmt: str, orientation: int, seed: int) -> bytes:
    if width * height > 4_000_000:  # beyond what a test should render
        if min(width, height) <= 3:
            return strip_png(width, height)  # a real strip, in a few KB
        small = strip_png(4, 4)  # a header that lies: it claims width x height
        return small[:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + small[24:]
    rng = np.random.default_rng(seed)  # a small random picture, blown up: cheap to encode
    image = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    image = image.resize((width, height), Image.Resampling.NEAREST)
    try:
        image = image.convert(mode)
    except ValueError:
        image = image.convert("L")
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    try:
        image.save(buffer, format=fmt, exif=exif.tobytes())
    except (OSError, ValueError, TypeError, KeyError, OverflowError):  # the format cannot
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@settings(
    max_examples=EXAMPLES,
    deadline=None,  # making the file is the test's cost: the preparation is timed below
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    width=sides,
    height=sides,
    mode=modes,
    fmt=formats,
    orientation=st.integers(1, 8),
    cut=st.one_of(st.none(), st.floats(0.05, 0.95)),
    seed=st.integers(0, 2**16),
)
def test_every_image_is_a_tensor_or_our_own_error(width, height, mode, fmt, orientation, cut, seed):
    data = encode(width, height, mode, fmt, orientation, seed)
    if cut is not None:
        data = data[: max(1, int(len(data) * cut))]
    started = time.perf_counter()
    try:
        tensor = PREPARER.image_tensor(data)
    except ImageError:
        seen["error"] += 1
        return
    finally:
        assert time.perf_counter() - started < LIMIT_S, f"{width}x{height} {mode} {fmt}"
    seen["tensor"] += 1
    assert tuple(tensor.shape) == (3, SIZE, SIZE)
    assert bool(tensor.isfinite().all())


def test_the_fuzz_run_stayed_within_its_memory_bound():
    """Run after the property above (same module): the process's peak grew little."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    test_every_image_is_a_tensor_or_our_own_error()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300, f"peak RSS grew by {grown_mib:.0f} MiB"
    assert seen["tensor"] > 50 and seen["error"] > 20  # both outcomes were exercised


@pytest.mark.parametrize(("width", "height"), [(1_000_000, 1), (100_000, 1), (1, 40_000)])
def test_aspect_ratio_bombs_are_refused_from_the_header(width, height):
    started = time.perf_counter()
    with pytest.raises(ImageAspectError, match=f"{width}x{height}"):
        PREPARER.image_tensor(strip_png(width, height))
    assert time.perf_counter() - started < 2


def test_the_bounds_in_one_place():
    check_image_size(MAX_ASPECT_RATIO * 10, 10)  # a wide panorama is fine
    with pytest.raises(ImageAspectError):
        check_image_size(MAX_ASPECT_RATIO * 10 + 1, 10)
    with pytest.raises(ImageTooLargeError):
        check_image_size(10_000, 10_000, max_pixels=1_000_000)
    with pytest.raises(ImageError, match="no pixels"):
        check_image_size(0, 10)
    array = np.zeros((1, 5000, 3), dtype=np.uint8)  # arrays and PIL images are checked too
    with pytest.raises(ImageAspectError):
        PREPARER.image_tensor(array)
