"""Pictures of the benchmark profiles: one object per drawn concept, big enough for a CNN.

A picture is a noisy low-saturation gradient with grey clutter (as in
:func:`magneto.sources.synthetic.scenes.render_scene`), split into ``grid`` x ``grid`` cells; each
drawn concept fills 70-95 % of a random cell with its visual code: one of 9 shapes (all mirror
symmetric, so a horizontal flip keeps them), a saturated hue (12 hues in the large-scale profile, 9
in nuswide), and one of 6 patterns in a dark second colour (solid, stripes across, stripes down,
checks, a centre dot, a rim). Drawing is vectorised numpy on cached masks; JPEGs are written by
Pillow with 4:4:4 chroma so small pictures keep their colours. Each picture has its own seed (the
dataset seed and its row), so the bytes do not depend on how many worker processes drew them.
"""

from __future__ import annotations

import colorsys
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from magneto.sources.synthetic.vocab import HUE_STEPS, PATTERNS, SHAPES

# (path, codes of the drawn concepts, seed, truncate the file afterwards)
RenderJob = tuple[str, list[tuple[int, int, int]], tuple[int, ...], bool]


@lru_cache(maxsize=4096)
def shape_masks(shape: int, pattern: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(object mask, second-colour mask) of a code on a ``side`` x ``side`` box."""
    axis = (np.arange(side) + 0.5) / side * 2.0 - 1.0  # pixel centres in [-1, 1]
    v, u = np.meshgrid(axis, axis, indexing="ij")  # v down, u across
    au, av, r = np.abs(u), np.abs(v), np.hypot(u, v)
    masks = (
        np.ones_like(u, dtype=bool),  # square
        r <= 1.0,  # disc
        au <= (v + 1.0) / 2.0,  # triangle, apex up
        au + av <= 1.0,  # diamond
        np.minimum(au, av) <= 0.34,  # cross
        (r <= 1.0) & (r >= 0.55),  # ring
        np.maximum(au, av) >= 0.55,  # frame
        (r <= 1.0) & (v >= -0.2),  # half disc
        au <= av + 0.15,  # hourglass
    )
    band = np.floor((v + 1.0) * 2.5).astype(int) % 2 == 1
    across = np.floor((u + 1.0) * 2.5).astype(int) % 2 == 1
    second = (
        np.zeros_like(u, dtype=bool),  # solid
        band,  # stripes across
        across,  # stripes down
        band ^ across,  # checks
        r <= 0.35,  # centre dot
        np.maximum(au, av) >= 0.75,  # rim
    )
    assert len(masks) == SHAPES and len(second) == PATTERNS
    mask = masks[shape]
    return mask, mask & second[pattern]


def render_codes(codes: Sequence[tuple[int, int, int]], size: int, grid: int, seed) -> np.ndarray:
    """An RGB uint8 picture with one object per code, from its own random stream."""
    rng = np.random.default_rng(seed)
    top, bottom = (
        np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.35, 0.75)))
        for _ in range(2)
    )
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    canvas = top * (1 - ramp) + bottom * ramp + rng.normal(0.0, 0.03, (size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(0, 3))):  # low-saturation clutter, not a concept
        x, y = rng.integers(0, size, 2)
        radius = rng.uniform(size / 16, size / 8)
        canvas[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = rng.uniform(0.25, 0.8)
    cell = size // grid
    for (shape, hue, pattern), slot in zip(codes, rng.permutation(grid * grid), strict=False):
        side = max(3, int(rng.uniform(0.7, 0.95) * cell))
        x0 = (slot % grid) * cell + int(rng.integers(0, cell - side + 1))
        y0 = (slot // grid) * cell + int(rng.integers(0, cell - side + 1))
        h = (hue / HUE_STEPS + rng.uniform(-0.01, 0.01)) % 1.0
        rgb = np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)))
        mask, second = shape_masks(int(shape), int(pattern), side)
        box = canvas[y0 : y0 + side, x0 : x0 + side]
        box[mask] = rgb
        box[second] = rgb * 0.3
    return (np.clip(canvas, 0.0, 1.0) * 255).astype(np.uint8)


def _render_batch(jobs: Sequence[RenderJob], size: int, grid: int) -> int:
    for path, codes, seed, truncate in jobs:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(render_codes(codes, size, grid, seed))
        image.save(target, format="JPEG", quality=90, subsampling=0)
        if truncate:  # a JPEG that fails to decode (a known defect of the real data)
            data = target.read_bytes()
            target.write_bytes(data[: len(data) // 3])
    return len(jobs)


def render_all(jobs: Sequence[RenderJob], size: int, grid: int, workers: int = 1) -> int:
    """Write every job's picture; ``workers`` > 1 spreads them over spawned processes."""
    if workers <= 1 or len(jobs) < 256:
        return _render_batch(jobs, size, grid)
    chunk = max(64, len(jobs) // (workers * 8))
    batches = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return sum(pool.map(_render_batch, batches, [size] * len(batches), [grid] * len(batches)))
