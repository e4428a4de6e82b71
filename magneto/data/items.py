"""Annotations encoded against the vocabulary, and the report of what was left out.

Items are encoded once (unknown tags are counted and reported, never a crash); everything
downstream (datasets, the feature cache, evaluation) works on :class:`EncodedItem`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from magneto.data.annotation_files import read_annotations
from magneto.data.annotations import Annotation
from magneto.data.augment import add_outliers
from magneto.data.vocabulary import Vocabulary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedItem:
    """An item with its tags as vocabulary indices."""

    item_id: str
    tags: np.ndarray  # int64 (n,)
    targets: np.ndarray | None  # float32 (n,), 1 = important
    image: str  # path relative to the image directory
    outliers: np.ndarray | None = None  # bool (n,), True for tags added as outliers
    origin: str | None = None  # "FILE:LINE" of the annotation, for messages


@dataclass
class DataReport:
    """What was left out while building a dataset, for the user to see."""

    unknown_tags: Counter = field(default_factory=Counter)
    items_without_known_tags: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)

    def lines(self, max_ids: int = 10) -> list[str]:
        out: list[str] = []
        if self.unknown_tags:
            common = ", ".join(f"{t!r} x{n}" for t, n in self.unknown_tags.most_common(5))
            out.append(
                f"{sum(self.unknown_tags.values())} unknown tag occurrences "
                f"({len(self.unknown_tags)} distinct) were ignored; most common: {common}"
            )
        if self.items_without_known_tags:
            out.append(
                f"{len(self.items_without_known_tags)} items had no known tag and were skipped: "
                + short_ids(self.items_without_known_tags, max_ids)
            )
        if self.missing_images:
            out.append(
                f"{len(self.missing_images)} items have no image file and were skipped: "
                + short_ids(self.missing_images, max_ids)
            )
        return out


def short_ids(ids: Sequence[str], limit: int) -> str:
    """The first ``limit`` ids, and how many more there are."""
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def encode_annotations(
    records: Sequence[Annotation], vocabulary: Vocabulary, report: DataReport | None = None
) -> tuple[list[EncodedItem], DataReport]:
    """Map tags to indices; tags the vocabulary lacks are dropped with their labels and reported."""
    report = report or DataReport()
    items: list[EncodedItem] = []
    for record in records:
        indices: list[int] = []
        targets: list[float] = []
        for pos, tag in enumerate(record.tags):
            idx = vocabulary.get(tag)
            if idx is None:
                report.unknown_tags[tag] += 1
                continue
            indices.append(idx)
            if record.labels is not None:
                targets.append(float(record.labels[pos]))
        if not indices:
            report.items_without_known_tags.append(record.item_id)
            continue
        items.append(
            EncodedItem(
                item_id=record.item_id,
                tags=np.asarray(indices, dtype=np.int64),
                targets=np.asarray(targets, dtype=np.float32)
                if record.labels is not None
                else None,
                image=record.image_path,
                origin=record.origin,
            )
        )
    return items, report


def with_outliers(
    items: Sequence[EncodedItem], k: int, vocab_size: int, seed: int
) -> list[EncodedItem]:
    """Add ``k`` random absent vocabulary tags (target 0) to every item, flagged as outliers."""
    rng = np.random.default_rng(seed)
    out: list[EncodedItem] = []
    for item in items:
        tags, flags = add_outliers(item.tags.tolist(), k, vocab_size, rng)
        targets = None
        if item.targets is not None:
            targets = np.concatenate(
                [item.targets, np.zeros(len(tags) - len(item.tags), np.float32)]
            )
        out.append(
            replace(
                item,
                tags=np.asarray(tags, dtype=np.int64),
                targets=targets,
                outliers=np.asarray(flags, dtype=bool),
            )
        )
    return out


def load_items(
    path: Path, vocabulary: Vocabulary, *, labelled: bool = True
) -> tuple[list[EncodedItem], DataReport]:
    """An annotation file encoded against ``vocabulary``; what was left out is logged."""
    items, report = encode_annotations(read_annotations(path, require_labels=labelled), vocabulary)
    for line in report.lines():
        log.warning("%s: %s", path.name, line)
    return items, report
