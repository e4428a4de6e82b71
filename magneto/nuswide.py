"""NUS-WIDE raw layout -> the paper's ETS dataset (``train.csv``, ``val.csv``, ``vocab.csv``,
``unlabeled.csv`` and ``summary.json``).

Paper preprocessing (section 4.1), as the reference implementation applied it:
tags = the item's concepts among the 81 (``AllTags81``); important = its ground-truth labels;
keep an item only if it has tags, has at least one ground-truth label, and important ⊆ tags.
Items longer than ``max_len`` tags are dropped (the reference's ``len_tags <= 16`` filter).
The official ``TrainImagelist``/``TestImagelist`` decide train vs. val.

Known defects of the real data are reported, not fatal: duplicated item ids (kept once when
their rows agree, dropped when they disagree), ids listed in both splits (kept in train so
validation never sees a training image), missing images and JPEGs that fail to decode.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Literal

import numpy as np
from tqdm import tqdm

from magneto.annotations import Annotation, write_annotations
from magneto.errors import DataError, ImageError
from magneto.images import decode_image
from magneto.vocabulary import Vocabulary

log = logging.getLogger(__name__)

OUTPUT_FILES = ("train.csv", "val.csv", "vocab.csv", "unlabeled.csv", "summary.json")
ImageCheck = Literal["none", "exists", "decode"]


@dataclass
class RawRow:
    """One line of ``Imagelist.txt`` with its tags and labels."""

    row: int
    item_id: str
    image: str  # "<category>/<NNNN>_<id>.jpg", relative to Flickr/
    tags: tuple[int, ...]  # concept indices, in concept order
    important: tuple[int, ...]


@dataclass
class PreparationSummary:
    """Counts after each step, and the defects found."""

    images_listed: int = 0
    concepts: int = 0
    steps: list[dict[str, int | str]] = field(default_factory=list)
    duplicate_ids_consistent: list[str] = field(default_factory=list)
    duplicate_ids_inconsistent: list[str] = field(default_factory=list)
    ids_in_both_splits: list[str] = field(default_factory=list)
    ids_in_no_split: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    corrupt_images: list[str] = field(default_factory=list)
    train_items: int = 0
    val_items: int = 0
    unlabeled_items: int = 0
    mean_tags_per_item: float = 0.0
    mean_important_per_item: float = 0.0
    mean_important_ratio: float = 0.0
    image_root: str = ""

    def add_step(self, name: str, count: int) -> None:
        self.steps.append({"step": name, "items": count})

    def lines(self) -> list[str]:
        out = [f"images listed: {self.images_listed} ({self.concepts} concepts)"]
        out += [f"  {s['step']}: {s['items']}" for s in self.steps]
        out.append(
            f"train: {self.train_items}, val: {self.val_items}, unlabeled: {self.unlabeled_items}"
        )
        out.append(
            f"mean tags/item: {self.mean_tags_per_item:.3f}, mean important/item: "
            f"{self.mean_important_per_item:.3f}, mean important ratio: "
            f"{self.mean_important_ratio:.3f}"
        )
        defects = {
            "duplicate ids kept once (rows agree)": self.duplicate_ids_consistent,
            "duplicate ids dropped (rows disagree)": self.duplicate_ids_inconsistent,
            "ids in both splits (kept in train)": self.ids_in_both_splits,
            "ids in neither split (not used)": self.ids_in_no_split,
            "missing images (dropped)": self.missing_images,
            "corrupt images (dropped)": self.corrupt_images,
        }
        for name, ids in defects.items():
            if ids:
                shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
                out.append(f"{name}: {len(ids)} [{shown}]")
        return out


# -- reading the raw layout --------------------------------------------------------------------


def find_concepts_file(root: Path) -> Path:
    for candidate in (root / "ConceptsList" / "Concepts81.txt", root / "Concepts81.txt"):
        if candidate.is_file():
            return candidate
    raise DataError(
        root / "ConceptsList" / "Concepts81.txt",
        None,
        "Concepts81.txt not found (looked in ConceptsList/ and at the root)",
    )


def read_concepts(root: Path) -> list[str]:
    path = find_concepts_file(root)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError(path, None, "no concept names")
    if len(set(names)) != len(names):
        raise DataError(path, None, "a concept name appears twice")
    return names


def parse_image_line(line: str) -> tuple[str, str]:
    """``actor\\0001_2124494179.jpg`` -> (item id ``2124494179``, ``actor/0001_2124494179.jpg``)."""
    parts = PureWindowsPath(line.strip()).parts  # accepts both \\ and / separators
    if not parts:
        raise ValueError("empty line")
    name = parts[-1]
    item_id = name.rsplit("_", 1)[-1].rsplit(".", 1)[0]
    if not item_id:
        raise ValueError(f"no item id in {line.strip()!r}")
    rel = "/".join(parts[-2:]) if len(parts) >= 2 else name
    return item_id, rel


def read_image_list(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataError(path, None, "image list not found")
    rows: list[tuple[str, str]] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(parse_image_line(line))
            except ValueError as exc:
                raise DataError(path, number, str(exc)) from None
    return rows


def _read_01_matrix(path: Path, rows: int, cols: int) -> np.ndarray:
    """Read a whitespace-separated 0/1 matrix, naming the first bad line if it is malformed."""
    if not path.is_file():
        raise DataError(path, None, "file not found")
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    numbered = [(i, ln.split()) for i, ln in enumerate(lines, start=1) if ln.strip()]
    if len(numbered) != rows:
        raise DataError(path, None, f"has {len(numbered)} rows but Imagelist.txt has {rows}")
    for number, values in numbered:
        if len(values) != cols:
            raise DataError(path, number, f"expected {cols} values, found {len(values)}")
    tokens = np.array([v for _, values in numbered for v in values])
    ones, zeros = tokens == "1", tokens == "0"
    if not bool((ones | zeros).all()):
        bad = int(np.flatnonzero(~(ones | zeros))[0]) // cols
        raise DataError(path, numbered[bad][0], "values must be 0 or 1")
    return ones.reshape(rows, cols)


def read_raw_rows(root: Path, concepts: Sequence[str]) -> list[RawRow]:
    images = read_image_list(root / "ImageList" / "Imagelist.txt")
    n = len(images)
    tags = _read_01_matrix(root / "NUS_WID_Tags" / "AllTags81.txt", n, len(concepts))
    labels = np.zeros((n, len(concepts)), dtype=bool)
    label_dir = root / "Groundtruth" / "AllLabels"
    for c, concept in enumerate(concepts):
        labels[:, c] = _read_01_matrix(label_dir / f"Labels_{concept}.txt", n, 1)[:, 0]
    return [
        RawRow(
            row=i,
            item_id=item_id,
            image=rel,
            tags=tuple(np.flatnonzero(tags[i]).tolist()),
            important=tuple(np.flatnonzero(labels[i]).tolist()),
        )
        for i, (item_id, rel) in enumerate(images)
    ]


# -- image checks ------------------------------------------------------------------------------


def _check_one(args: tuple[str, str]) -> str | None:
    path, _ = args
    try:
        decode_image(path, min_side=64)
    except ImageError as exc:
        return str(exc)
    return None


def check_images(
    rows: Sequence[RawRow], image_root: Path, mode: ImageCheck, workers: int
) -> tuple[set[str], set[str]]:
    """Return the item ids whose image is missing, and those whose image fails to decode."""
    if mode == "none":
        return set(), set()
    missing = {r.item_id for r in rows if not (image_root / r.image).is_file()}
    if mode == "exists":
        return missing, set()
    todo = [(str(image_root / r.image), r.item_id) for r in rows if r.item_id not in missing]
    corrupt: set[str] = set()
    bar = tqdm(total=len(todo), desc="decoding images", unit="img", leave=False)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_check_one, todo, chunksize=64)
            for (_, item_id), err in zip(todo, results, strict=True):
                if err:
                    corrupt.add(item_id)
                bar.update()
    else:
        for job in todo:
            if _check_one(job):
                corrupt.add(job[1])
            bar.update()
    bar.close()
    return missing, corrupt


# -- the preparation ----------------------------------------------------------------------------


def _resolve_duplicates(
    rows: list[RawRow], summary: PreparationSummary
) -> tuple[list[RawRow], dict[str, set[str]]]:
    """One row per item id; return rows and, per id, the image paths of all its lines."""
    groups: dict[str, list[RawRow]] = defaultdict(list)
    for r in rows:
        groups[r.item_id].append(r)
    kept: list[RawRow] = []
    paths: dict[str, set[str]] = {}
    for item_id, group in groups.items():
        paths[item_id] = {r.image for r in group}
        if len(group) > 1:
            if len({(r.tags, r.important) for r in group}) > 1:
                summary.duplicate_ids_inconsistent.append(item_id)
                continue
            summary.duplicate_ids_consistent.append(item_id)
        kept.append(group[0])
    kept.sort(key=lambda r: r.row)
    return kept, paths


def prepare_nuswide(
    root: str | Path,
    out: str | Path,
    *,
    max_len: int = 16,
    image_check: ImageCheck = "exists",
    overwrite: bool = False,
    workers: int = 1,
) -> PreparationSummary:
    """Run the paper's preprocessing on a raw NUS-WIDE layout and write the prepared files."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DataError(root, None, "NUS-WIDE root directory not found")
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds {', '.join(existing)}; choose another --out or pass --overwrite"
        )

    concepts = read_concepts(root)
    rows = read_raw_rows(root, concepts)
    summary = PreparationSummary(images_listed=len(rows), concepts=len(concepts))
    image_root = root / "Flickr"
    summary.image_root = str(image_root)

    train_paths = {rel for _, rel in read_image_list(root / "ImageList" / "TrainImagelist.txt")}
    test_paths = {rel for _, rel in read_image_list(root / "ImageList" / "TestImagelist.txt")}

    rows, paths_by_id = _resolve_duplicates(rows, summary)
    summary.add_step("unique item ids (duplicates resolved)", len(rows))
    # Step 1: tags restricted to the concepts (AllTags81 already is); step 3: tags non-empty.
    with_tags = [r for r in rows if r.tags]
    summary.add_step("with at least one of the concepts as a tag", len(with_tags))
    with_truth = [r for r in with_tags if r.important]
    summary.add_step("with at least one ground-truth label", len(with_truth))
    subset = [r for r in with_truth if set(r.important) <= set(r.tags)]
    summary.add_step("important tags all among the tags", len(subset))
    short = [r for r in subset if len(r.tags) <= max_len]
    summary.add_step(f"at most {max_len} tags", len(short))

    labelled_ids = {r.item_id for r in short}
    unlabeled = [r for r in with_tags if r.item_id not in labelled_ids and len(r.tags) <= max_len]
    missing, corrupt = check_images(short + unlabeled, image_root, image_check, workers)
    summary.missing_images = sorted(missing)
    summary.corrupt_images = sorted(corrupt)
    bad = missing | corrupt
    usable = [r for r in short if r.item_id not in bad]
    if image_check != "none":
        summary.add_step(
            f"image present{' and decodable' if image_check == 'decode' else ''}", len(usable)
        )

    train: list[RawRow] = []
    val: list[RawRow] = []
    for r in usable:
        paths = paths_by_id[r.item_id]
        in_train, in_test = bool(paths & train_paths), bool(paths & test_paths)
        if in_train and in_test:
            summary.ids_in_both_splits.append(r.item_id)
        if in_train:
            train.append(r)
        elif in_test:
            val.append(r)
        else:
            summary.ids_in_no_split.append(r.item_id)
    unlabeled = [r for r in unlabeled if r.item_id not in bad]

    def to_record(r: RawRow, labelled: bool) -> Annotation:
        important = set(r.important)
        return Annotation(
            item_id=r.item_id,
            tags=tuple(concepts[c] for c in r.tags),
            labels=tuple(int(c in important) for c in r.tags) if labelled else None,
            image=r.image,
        )

    out.mkdir(parents=True, exist_ok=True)
    summary.train_items = write_annotations(
        out / "train.csv", [to_record(r, True) for r in train], labelled=True
    )
    summary.val_items = write_annotations(
        out / "val.csv", [to_record(r, True) for r in val], labelled=True
    )
    summary.unlabeled_items = write_annotations(
        out / "unlabeled.csv", [to_record(r, False) for r in unlabeled], labelled=False
    )
    Vocabulary(concepts).save(out / "vocab.csv")
    final = train + val
    if final:
        summary.mean_tags_per_item = float(np.mean([len(r.tags) for r in final]))
        summary.mean_important_per_item = float(np.mean([len(r.important) for r in final]))
        summary.mean_important_ratio = float(
            np.mean([len(r.important) / len(r.tags) for r in final])
        )
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "summary.json")
    return summary
