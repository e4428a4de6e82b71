"""The synthetic world of the ``nuswide`` profile: the 81 NUS-WIDE concepts in 9 scene groups,
and how an image shows its visible concepts (one large shape per concept, the group deciding
the shape and the concept's place in its group the hue)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

CONCEPTS81: tuple[str, ...] = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings",
    "cars", "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing",
    "dog", "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost",
    "garden", "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map",
    "military", "moon", "mountain", "nighttime", "ocean", "person", "plane", "plants",
    "police", "protest", "railroad", "rainbow", "reflection", "road", "rocks", "running",
    "sand", "sign", "sky", "snow", "soccer", "sports", "statue", "street", "sun", "sunset",
    "surf", "swimming", "tattoo", "temple", "tiger", "tower", "town", "toy", "train", "tree",
    "valley", "vehicle", "water", "waterfall", "wedding", "whales", "window", "zebra",
)  # fmt: skip

SCENES: dict[str, tuple[str, ...]] = {
    "coast": ("beach", "ocean", "sand", "surf", "swimming", "boats", "harbor", "coral", "whales"),
    "sky": ("sky", "clouds", "sun", "sunset", "moon", "rainbow", "nighttime", "reflection",
            "plane"),
    "wildlife": ("animal", "bear", "birds", "elk", "fox", "tiger", "zebra", "fish", "cow"),
    "home": ("cat", "dog", "horses", "toy", "book", "food", "computer", "window", "house"),
    "city": ("buildings", "cityscape", "street", "town", "tower", "bridge", "cars", "road", "sign"),
    "nature": ("mountain", "valley", "lake", "waterfall", "water", "rocks", "glacier", "snow",
               "frost"),
    "garden": ("garden", "flowers", "plants", "tree", "leaf", "grass", "statue", "temple",
               "castle"),
    "people": ("person", "dancing", "wedding", "tattoo", "sports", "soccer", "running", "protest",
               "police"),
    "transport": ("airport", "railroad", "train", "vehicle", "military", "flags", "map", "fire",
                  "earthquake"),
}  # fmt: skip

HUES = np.linspace(0.0, 1.0, 9, endpoint=False)
SHAPES = ("rectangle", "ellipse", "octagon")


def concept_style(concept: int) -> tuple[str, float, int]:
    """(scene, hue, shape index) of a concept."""
    name = CONCEPTS81[concept]
    for g, (scene, members) in enumerate(SCENES.items()):
        if name in members:
            return scene, float(HUES[members.index(name)]), g % len(SHAPES)
    raise KeyError(name)


def render_scene(visible: Sequence[int], size: int, rng: np.random.Generator) -> Image.Image:
    """Draw a noisy gradient background, grey clutter, and one large shape per visible concept."""
    return render_scene_with_boxes(visible, size, rng)[0]


def render_scene_with_boxes(
    visible: Sequence[int], size: int, rng: np.random.Generator
) -> tuple[Image.Image, dict[int, tuple[int, int, int, int]]]:
    """:func:`render_scene`, and where each visible concept was drawn: its box
    ``(x0, y0, x1, y1)`` in pixels (what checks of the model's attention compare with)."""
    boxes: dict[int, tuple[int, int, int, int]] = {}
    top, bottom = (
        np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.35, 0.75)))
        for _ in range(2)
    )
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    canvas = top * (1 - ramp) + bottom * ramp + np.zeros((size, size, 3))
    canvas += rng.normal(0.0, 0.03, canvas.shape)
    image = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 3))):  # low-saturation clutter, not a concept
        grey = int(rng.integers(60, 200))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 16, size // 8))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(grey, grey, grey))
    half = size // 2
    cells = rng.permutation(4)
    for concept, cell in zip(visible, cells, strict=False):
        _, hue, shape = concept_style(concept)
        side = int(rng.uniform(0.75, 0.95) * half)
        x0 = (cell % 2) * half + int(rng.integers(0, half - side + 1))
        y0 = (cell // 2) * half + int(rng.integers(0, half - side + 1))
        box = (x0, y0, x0 + side, y0 + side)
        boxes[int(concept)] = box
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0))
        fill = tuple(int(255 * v) for v in rgb)
        if SHAPES[shape] == "rectangle":
            draw.rectangle(box, fill=fill)
        elif SHAPES[shape] == "ellipse":
            draw.ellipse(box, fill=fill)
        else:
            a, b = side // 4, side - side // 4  # an octagon: the square with its corners cut
            corners = [(a, 0), (b, 0), (side, a), (side, b), (b, side), (a, side), (0, b), (0, a)]
            draw.polygon([(x0 + dx, y0 + dy) for dx, dy in corners], fill=fill)
    return image, boxes
