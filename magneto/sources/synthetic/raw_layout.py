"""Writing a synthetic dataset in the NUS-WIDE raw layout: the image-list rows, the tag and
label matrices, and the defects the real archive has (duplicates, a missing image, truncated
JPEGs), so that the real preparation code runs on it unchanged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from magneto.sources.synthetic.scenes import SCENES


@dataclass
class SynthRow:
    """One image-list row to write (a duplicated id has two, in different categories)."""

    item_id: str
    scene: str  # also the row's category folder
    visible: list[int]  # ground-truth concepts (here: those drawn in the image)
    tags: list[int]  # concept indices the uploader gave
    test: bool
    defect: str = ""


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


def truncate_file(path: Path) -> None:
    """Keep the first third of a file (a JPEG that fails to decode)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
