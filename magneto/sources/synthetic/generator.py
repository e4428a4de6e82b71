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

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from magneto.sources.synthetic.raw_layout import (
    SynthRow,
    plan_defects,
    raw_image_lines,
    truncate_file,
    write_raw_tables,
)
from magneto.sources.synthetic.scenes import (
    CONCEPTS81,
    SCENES,
    render_scene_with_boxes,
)


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


def _write_layout(
    root: Path,
    rows: list[SynthRow],
    defects: dict[str, list[str]],
    size: int,
    rng: np.random.Generator,
) -> None:
    """The images (drawn in row order from ``rng``), then the lists and matrices, and
    ``boxes.jsonl``: where in each image each visible concept was drawn."""
    lines = raw_image_lines(rows)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "boxes.jsonl").open("w", encoding="utf-8") as boxes:
        for line, row in zip(lines, rows, strict=True):
            if row.item_id in defects.get("missing image", []):
                continue
            path = root / "Flickr" / line.replace("\\", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            image, drawn = render_scene_with_boxes(row.visible, size, rng)
            image.save(path, format="JPEG", quality=90)
            if row.item_id in defects.get("truncated jpeg", []):
                truncate_file(path)
            named = {CONCEPTS81[c]: [int(v) for v in box] for c, box in drawn.items()}
            boxes.write(json.dumps({"item_id": row.item_id, "size": size, "boxes": named}) + "\n")
    write_raw_tables(root, CONCEPTS81, lines, rows)


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
