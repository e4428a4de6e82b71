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

Reading the raw files is :mod:`magneto.sources.nuswide_raw`'s job; this module applies the filters
and writes the prepared files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from magneto.data.annotation_files import write_annotations
from magneto.data.annotations import Annotation
from magneto.data.vocabulary import Vocabulary
from magneto.errors import DataError
from magneto.sources.nuswide_raw import (
    ImageCheck,
    RawRow,
    check_images,
    parse_image_line,
    read_concepts,
    read_image_list,
    read_raw_rows,
)

__all__ = [
    "OUTPUT_FILES",
    "ImageCheck",
    "PreparationSummary",
    "parse_image_line",
    "prepare_nuswide",
]

OUTPUT_FILES = ("train.csv", "val.csv", "test.csv", "vocab.csv", "unlabeled.csv", "summary.json")


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
    test_items: int = 0
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
            f"train: {self.train_items}, val: {self.val_items}, "
            + (f"test: {self.test_items}, " if self.test_items else "")
            + f"unlabeled: {self.unlabeled_items}"
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
    test_holdout: float = 0.0,
    seed: int = 0,
) -> PreparationSummary:
    """Run the paper's preprocessing on a raw NUS-WIDE layout and write the prepared files.

    ``test_holdout``: the share of the official test list's items written to ``test.csv``
    instead of ``val.csv`` (by a hash of ``seed`` and the item id, so an item keeps its split),
    so that thresholds and recipes chosen on val are reported on items they never saw. The
    training split stays the paper's."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DataError(root, None, "NUS-WIDE root directory not found")
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    if not 0.0 <= test_holdout < 1.0:
        raise ValueError("the test holdout must be at least 0 and below 1")
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
    splits = [
        {rel for _, rel in read_image_list(root / "ImageList" / name)}
        for name in ("TrainImagelist.txt", "TestImagelist.txt")
    ]

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
    pairs = [(r.item_id, r.image) for r in short + unlabeled]
    missing, corrupt = check_images(pairs, image_root, image_check, workers)
    summary.missing_images = sorted(missing)
    summary.corrupt_images = sorted(corrupt)
    bad = missing | corrupt
    usable = [r for r in short if r.item_id not in bad]
    if image_check != "none":
        summary.add_step(
            f"image present{' and decodable' if image_check == 'decode' else ''}", len(usable)
        )
    train, val = _split(usable, paths_by_id, splits, summary)
    test = [r for r in val if held_out(r.item_id, test_holdout, seed)]
    val = [r for r in val if not held_out(r.item_id, test_holdout, seed)]
    unlabeled = [r for r in unlabeled if r.item_id not in bad]
    _write(out, concepts, train, val, unlabeled, summary, test if test_holdout else None)
    return summary


def held_out(item_id: str, share: float, seed: int) -> bool:
    """Whether an item goes to test.csv: a uniform number from a hash of (seed, id)."""
    digest = hashlib.sha256(f"{seed}\0{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _split(
    rows: list[RawRow],
    paths_by_id: dict[str, set[str]],
    splits: list[set[str]],
    summary: PreparationSummary,
) -> tuple[list[RawRow], list[RawRow]]:
    """Train and val by the official lists; an id in both goes to train, in neither nowhere."""
    train_paths, test_paths = splits
    train: list[RawRow] = []
    val: list[RawRow] = []
    for r in rows:
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
    return train, val


def _write(
    out: Path,
    concepts: list[str],
    train: list[RawRow],
    val: list[RawRow],
    unlabeled: list[RawRow],
    summary: PreparationSummary,
    test: list[RawRow] | None = None,
) -> None:
    """The annotation files, the vocabulary, and the summary with its statistics (last)."""

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
    if test is not None:
        summary.test_items = write_annotations(
            out / "test.csv", [to_record(r, True) for r in test], labelled=True
        )
    else:  # an --overwrite without a holdout: a test.csv of an earlier run would mislead
        (out / "test.csv").unlink(missing_ok=True)
    summary.unlabeled_items = write_annotations(
        out / "unlabeled.csv", [to_record(r, False) for r in unlabeled], labelled=False
    )
    Vocabulary(concepts).save(out / "vocab.csv")
    final = train + val + (test or [])
    if final:
        summary.mean_tags_per_item = float(np.mean([len(r.tags) for r in final]))
        summary.mean_important_per_item = float(np.mean([len(r.important) for r in final]))
        summary.mean_important_ratio = float(
            np.mean([len(r.important) / len(r.tags) for r in final])
        )
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "summary.json")
