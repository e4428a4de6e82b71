"""A synthetic dataset in the NUS-WIDE raw layout, so the real preparation code runs on it.

The 81 NUS-WIDE concepts are split into 9 scene groups of 9 ("coast", "sky", ...). An image
of a scene shows 1-3 of its group's concepts; concept ``m`` of a group is drawn as a large
shape of hue ``m`` (the group decides the shape). The uploader's tags are the visible
concepts, plus 1-3 *plausible but absent* concepts of the same group, plus sometimes random
concepts of other groups. Which in-group tags are visible is random and uniform, so a
tag-only model cannot tell them apart: only the image can. Ground truth = visible concepts.

Besides the labelled items it writes items that the paper's filters must drop or route to
``unlabeled.csv`` (no tags; no visible concept; a visible concept left untagged), and, unless
disabled, the known defects of the real data: a duplicated id whose rows agree (one listed in
both splits), a duplicated id whose rows disagree, a missing image and truncated JPEGs.
"""

from __future__ import annotations

import colorsys
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

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


class SynthConfig(BaseModel):
    """Size and seed of a synthetic dataset."""

    model_config = ConfigDict(extra="forbid")

    items: int = Field(2000, ge=10, description="labelled items that pass the paper's filters")
    unlabeled: int = Field(500, ge=0, description="extra items without usable ground truth")
    seed: int = 0
    image_size: int = Field(128, ge=32, le=1024)
    test_fraction: float = Field(0.4, gt=0.0, lt=1.0, description="share in TestImagelist.txt")
    defects: bool = Field(True, description="inject NUS-WIDE's known defects")


@dataclass
class SynthSummary:
    """What was written, and what preparation must find."""

    images_listed: int = 0
    labelled: int = 0
    unlabeled_untagged_visible: int = 0
    unlabeled_no_visible: int = 0
    no_tags: int = 0
    defects: dict[str, list[str]] = field(default_factory=dict)
    expected_prepared: int = 0  # train + val items after ``prepare nuswide`` (image check: exists)

    def lines(self) -> list[str]:
        out = [
            f"images listed: {self.images_listed}",
            f"labelled items: {self.labelled}",
            f"items routed to unlabeled: {self.unlabeled_untagged_visible} (a visible concept "
            f"untagged) + {self.unlabeled_no_visible} (nothing visible)",
            f"items without tags: {self.no_tags}",
        ]
        out += [f"defect {k}: {', '.join(v)}" for k, v in self.defects.items() if v]
        out.append(f"expected train+val after preparation: {self.expected_prepared}")
        return out


@dataclass
class _Item:
    item_id: str
    scene: str
    visible: list[int]  # concept indices drawn in the image
    tags: list[int]  # concept indices the uploader gave
    test: bool
    defect: str = ""


def concept_style(concept: int) -> tuple[str, float, int]:
    """(scene, hue, shape index) of a concept."""
    name = CONCEPTS81[concept]
    for g, (scene, members) in enumerate(SCENES.items()):
        if name in members:
            return scene, float(HUES[members.index(name)]), g % len(SHAPES)
    raise KeyError(name)


def _scene_indices() -> dict[str, list[int]]:
    index = {c: i for i, c in enumerate(CONCEPTS81)}
    return {scene: [index[c] for c in members] for scene, members in SCENES.items()}


def render_scene(visible: Sequence[int], size: int, rng: np.random.Generator) -> Image.Image:
    """Draw a noisy gradient background, grey clutter, and one large shape per visible concept."""
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
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0))
        fill = tuple(int(255 * v) for v in rgb)
        if SHAPES[shape] == "rectangle":
            draw.rectangle(box, fill=fill)
        elif SHAPES[shape] == "ellipse":
            draw.ellipse(box, fill=fill)
        else:
            cut = side // 4
            draw.polygon(
                [(x0 + cut, y0), (x0 + side - cut, y0), (x0 + side, y0 + cut),
                 (x0 + side, y0 + side - cut), (x0 + side - cut, y0 + side),
                 (x0 + cut, y0 + side), (x0, y0 + side - cut), (x0, y0 + cut)],
                fill=fill,
            )  # fmt: skip
    return image


def _plan_items(config: SynthConfig, rng: np.random.Generator) -> list[_Item]:
    groups = _scene_indices()
    scenes = list(groups)
    all_concepts = np.arange(len(CONCEPTS81))
    used: set[int] = set()

    def new_id() -> str:
        while True:
            value = int(rng.integers(10**8, 4 * 10**9))
            if value not in used:
                used.add(value)
                return str(value)

    def tags_for(scene: str, visible: list[int]) -> list[int]:
        members = groups[scene]
        others = [c for c in members if c not in visible]
        absent = rng.choice(others, size=int(rng.integers(1, 4)), replace=False).tolist()
        n_random = int(rng.choice([0, 0, 1, 2]))
        outside = np.setdiff1d(all_concepts, members)
        random_tags = rng.choice(outside, size=n_random, replace=False).tolist()
        return sorted(set(visible) | set(absent) | set(random_tags))

    def draw_visible(scene: str) -> list[int]:
        return sorted(
            rng.choice(groups[scene], size=int(rng.integers(1, 4)), replace=False).tolist()
        )

    items: list[_Item] = []
    for _ in range(config.items):
        scene = scenes[int(rng.integers(len(scenes)))]
        visible = draw_visible(scene)
        items.append(_Item(new_id(), scene, visible, tags_for(scene, visible), False))
    for k in range(config.unlabeled):
        scene = scenes[int(rng.integers(len(scenes)))]
        if k % 10 < 7:  # a visible concept the uploader did not tag: important ⊄ tags
            visible = draw_visible(scene)
            visible = (
                visible
                if len(visible) > 1
                else sorted(
                    set(visible) | {int(rng.choice([c for c in groups[scene] if c not in visible]))}
                )
            )
            tags = [c for c in tags_for(scene, visible) if c != visible[0]]
            items.append(_Item(new_id(), scene, visible, tags, False, "untagged-visible"))
        else:  # nothing of the tags is in the picture: no ground truth at all
            items.append(_Item(new_id(), scene, [], tags_for(scene, []), False, "no-visible"))
    for _ in range(max(1, config.items // 20)):  # uploader gave none of the 81 concepts
        scene = scenes[int(rng.integers(len(scenes)))]
        items.append(_Item(new_id(), scene, draw_visible(scene), [], False, "no-tags"))
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    for item in items:
        item.test = bool(rng.random() < config.test_fraction)
    return items


def generate(config: SynthConfig, out: str | Path, *, overwrite: bool = False) -> SynthSummary:
    """Write the dataset under ``out``; returns what preparation should find."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; choose another --out or pass --overwrite")
    rng = np.random.default_rng(config.seed)
    items = _plan_items(config, rng)
    summary = SynthSummary(defects={})
    labelled = [it for it in items if not it.defect]

    # Duplicated ids get a second image-list line under another category folder.
    extra_rows: list[tuple[_Item, str, list[int], list[int], bool]] = []
    missing: set[str] = set()
    truncated: set[str] = set()
    if config.defects and len(labelled) >= 8:
        agree, disagree, gone = labelled[0], labelled[1], labelled[2]
        other_scene = next(s for s in SCENES if s != agree.scene)
        # Same photo filed under a second category, in the other split: rows agree.
        extra_rows.append((agree, other_scene, agree.visible, agree.tags, not agree.test))
        # Same id again with different ground truth: rows disagree.
        flipped = [c for c in disagree.tags if c not in disagree.visible][:1] or disagree.tags[:1]
        extra_rows.append((disagree, other_scene, flipped, disagree.tags, disagree.test))
        missing.add(gone.item_id)
        truncated.update(it.item_id for it in labelled[3:6])
        summary.defects = {
            "duplicate id, rows agree (one row in each split)": [agree.item_id],
            "duplicate id, rows disagree": [disagree.item_id],
            "missing image": [gone.item_id],
            "truncated jpeg": sorted(truncated),
        }

    root = out
    (root / "ConceptsList").mkdir(parents=True, exist_ok=True)
    (root / "ImageList").mkdir(exist_ok=True)
    (root / "NUS_WID_Tags").mkdir(exist_ok=True)
    (root / "Groundtruth" / "AllLabels").mkdir(parents=True, exist_ok=True)
    (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(CONCEPTS81) + "\n")

    counters: dict[str, int] = {}
    rows: list[tuple[str, list[int], list[int], bool]] = []  # (list line, tags, visible, test)

    def list_line(item: _Item, category: str) -> str:
        counters[category] = counters.get(category, 0) + 1
        return f"{category}\\{counters[category]:04d}_{item.item_id}.jpg"

    for item in items:
        rows.append((list_line(item, item.scene), item.tags, item.visible, item.test))
    for item, category, visible, tags, test in extra_rows:
        rows.append((list_line(item, category), tags, visible, test))

    for line, _, visible, _ in rows:
        category, name = line.split("\\")
        item_id = name.rsplit("_", 1)[1][:-4]
        if item_id in missing:
            continue
        folder = root / "Flickr" / category
        folder.mkdir(parents=True, exist_ok=True)
        image = render_scene(visible, config.image_size, rng)
        path = folder / name
        image.save(path, format="JPEG", quality=90)
        if item_id in truncated:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])

    n = len(CONCEPTS81)
    with (root / "ImageList" / "Imagelist.txt").open("w", newline="\r\n") as handle:
        handle.writelines(line + "\n" for line, *_ in rows)
    with (root / "ImageList" / "TrainImagelist.txt").open("w", newline="\r\n") as handle:
        handle.writelines(line + "\n" for line, _, _, test in rows if not test)
    with (root / "ImageList" / "TestImagelist.txt").open("w", newline="\r\n") as handle:
        handle.writelines(line + "\n" for line, _, _, test in rows if test)
    tag_matrix = np.zeros((len(rows), n), dtype=np.uint8)
    label_matrix = np.zeros((len(rows), n), dtype=np.uint8)
    for r, (_, tags, visible, _) in enumerate(rows):
        tag_matrix[r, tags] = 1
        label_matrix[r, visible] = 1
    with (root / "NUS_WID_Tags" / "AllTags81.txt").open("w") as handle:
        handle.writelines(" ".join(map(str, row)) + " \n" for row in tag_matrix)
    for c, concept in enumerate(CONCEPTS81):
        (root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(
            "\n".join(map(str, label_matrix[:, c])) + "\n"
        )

    summary.images_listed = len(rows)
    summary.labelled = len(labelled)
    summary.unlabeled_untagged_visible = sum(it.defect == "untagged-visible" for it in items)
    summary.unlabeled_no_visible = sum(it.defect == "no-visible" for it in items)
    summary.no_tags = sum(it.defect == "no-tags" for it in items)
    dropped = 2 if summary.defects else 0  # the disagreeing duplicate and the missing image
    summary.expected_prepared = len(labelled) - dropped
    tmp = root / "synth_summary.json.tmp"
    tmp.write_text(json.dumps({"config": config.model_dump(), **asdict(summary)}, indent=2))
    os.replace(tmp, root / "synth_summary.json")
    return summary
