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
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
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
class SynthRow:
    """One image-list row to write (a duplicated id has two, in different categories)."""

    item_id: str
    scene: str  # also the row's category folder
    visible: list[int]  # ground-truth concepts (here: those drawn in the image)
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
            a, b = side // 4, side - side // 4  # an octagon: the square with its corners cut
            corners = [(a, 0), (b, 0), (side, a), (side, b), (b, side), (a, side), (0, b), (0, a)]
            draw.polygon([(x0 + dx, y0 + dy) for dx, dy in corners], fill=fill)
    return image


def _plan_items(config: SynthConfig, rng: np.random.Generator) -> list[SynthRow]:
    groups = {scene: [CONCEPTS81.index(c) for c in m] for scene, m in SCENES.items()}
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
        return sorted(rng.choice(groups[scene], int(rng.integers(1, 4)), replace=False).tolist())

    items: list[SynthRow] = []
    for _ in range(config.items):
        scene = scenes[int(rng.integers(len(scenes)))]
        visible = draw_visible(scene)
        items.append(SynthRow(new_id(), scene, visible, tags_for(scene, visible), False))
    for k in range(config.unlabeled):
        scene = scenes[int(rng.integers(len(scenes)))]
        if k % 10 < 7:  # a visible concept the uploader did not tag: important ⊄ tags
            visible = draw_visible(scene)
            if len(visible) == 1:  # a second one, so that something stays visible and tagged
                others = [c for c in groups[scene] if c not in visible]
                visible = sorted({*visible, int(rng.choice(others))})
            tags = [c for c in tags_for(scene, visible) if c != visible[0]]
            items.append(SynthRow(new_id(), scene, visible, tags, False, "untagged-visible"))
        else:  # nothing of the tags is in the picture: no ground truth at all
            items.append(SynthRow(new_id(), scene, [], tags_for(scene, []), False, "no-visible"))
    for _ in range(max(1, config.items // 20)):  # uploader gave none of the 81 concepts
        scene = scenes[int(rng.integers(len(scenes)))]
        items.append(SynthRow(new_id(), scene, draw_visible(scene), [], False, "no-tags"))
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    for item in items:
        item.test = bool(rng.random() < config.test_fraction)
    return items


def plan_defects(labelled: list[SynthRow]) -> tuple[list[SynthRow], dict[str, list[str]]]:
    """NUS-WIDE's known defects on the first labelled items: the extra rows and the ids."""
    agree, disagree, gone = labelled[:3]
    other_scene = next(s for s in SCENES if s != agree.scene)
    flipped = [c for c in disagree.tags if c not in disagree.visible][:1] or disagree.tags[:1]
    extra_rows = [
        # Same photo filed under a second category, in the other split: rows agree.
        replace(agree, scene=other_scene, test=not agree.test),
        # Same id again with different ground truth: rows disagree.
        replace(disagree, scene=other_scene, visible=flipped),
    ]
    return extra_rows, {
        "duplicate id, rows agree (one row in each split)": [agree.item_id],
        "duplicate id, rows disagree": [disagree.item_id],
        "missing image": [gone.item_id],
        "truncated jpeg": sorted(it.item_id for it in labelled[3:6]),
    }


def raw_image_lines(rows: Sequence[SynthRow]) -> list[str]:
    """``Imagelist.txt`` lines: ``<category>\\<NNNN>_<id>.jpg``, numbered per category."""
    counters: Counter[str] = Counter()
    lines: list[str] = []
    for row in rows:
        counters[row.scene] += 1
        lines.append(f"{row.scene}\\{counters[row.scene]:04d}_{row.item_id}.jpg")
    return lines


def write_raw_tables(
    root: Path, concepts: Sequence[str], lines: Sequence[str], rows: Sequence[SynthRow]
) -> None:
    """The concept list, the three image lists and the tag and label matrices of ``rows``
    (``row.tags`` -> ``AllTags81.txt``, ``row.visible`` -> ``Labels_<concept>.txt``)."""
    for sub in ("ConceptsList", "ImageList", "NUS_WID_Tags", "Groundtruth/AllLabels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    for name, split in (("Imagelist", None), ("TrainImagelist", False), ("TestImagelist", True)):
        with (root / "ImageList" / f"{name}.txt").open("w", newline="\r\n") as handle:
            handle.writelines(
                line + "\n"
                for line, row in zip(lines, rows, strict=True)
                if split in (None, row.test)
            )
    tag_matrix = np.zeros((len(rows), len(concepts)), dtype=np.uint8)
    label_matrix = np.zeros_like(tag_matrix)
    for r, row in enumerate(rows):
        tag_matrix[r, row.tags] = 1
        label_matrix[r, row.visible] = 1
    with (root / "NUS_WID_Tags" / "AllTags81.txt").open("w") as handle:
        handle.writelines(" ".join(map(str, values)) + " \n" for values in tag_matrix)
    for c, concept in enumerate(concepts):
        (root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(
            "\n".join(map(str, label_matrix[:, c])) + "\n"
        )


def _write_layout(
    root: Path,
    rows: list[SynthRow],
    defects: dict[str, list[str]],
    size: int,
    rng: np.random.Generator,
) -> None:
    """The images (drawn in row order from ``rng``), then the lists and matrices."""
    lines = raw_image_lines(rows)
    for line, row in zip(lines, rows, strict=True):
        if row.item_id in defects.get("missing image", []):
            continue
        path = root / "Flickr" / line.replace("\\", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        render_scene(row.visible, size, rng).save(path, format="JPEG", quality=90)
        if row.item_id in defects.get("truncated jpeg", []):
            truncate_file(path)
    write_raw_tables(root, CONCEPTS81, lines, rows)


def truncate_file(path: Path) -> None:
    """Keep the first third of a file (a JPEG that fails to decode)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def generate(config: SynthConfig, out: str | Path, *, overwrite: bool = False) -> SynthSummary:
    """Write the dataset under ``out``; returns what preparation should find."""
    root = Path(out)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} is not empty; choose another --out or pass --overwrite")
    rng = np.random.default_rng(config.seed)
    items = _plan_items(config, rng)
    labelled = [it for it in items if not it.defect]
    extra_rows: list[SynthRow] = []
    defects: dict[str, list[str]] = {}
    if config.defects and len(labelled) >= 8:
        extra_rows, defects = plan_defects(labelled)
    _write_layout(root, items + extra_rows, defects, config.image_size, rng)
    kinds = Counter(it.defect for it in items)
    summary = SynthSummary(
        images_listed=len(items) + len(extra_rows),
        labelled=len(labelled),
        unlabeled_untagged_visible=kinds["untagged-visible"],
        unlabeled_no_visible=kinds["no-visible"],
        no_tags=kinds["no-tags"],
        defects=defects,
        # Preparation drops the disagreeing duplicate and the missing image.
        expected_prepared=len(labelled) - (2 if defects else 0),
    )
    tmp = root / "synth_summary.json.tmp"
    tmp.write_text(json.dumps({"config": config.model_dump(), **asdict(summary)}, indent=2))
    os.replace(tmp, root / "synth_summary.json")
    return summary
