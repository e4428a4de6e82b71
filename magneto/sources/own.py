"""Your own annotations → a prepared dataset: what ``magneto prepare own`` writes for
``magneto train`` and ``magneto pretrain`` to read.

Input: annotation files (CSV in either of the reference's forms, JSONL or Parquet: ``item_id``,
``tags``, ``important_tags`` or ``label``, optional ``image``) and the folder their images are
under. Output: ``vocab.csv``; ``train.csv``, ``val.csv`` and ``test.csv`` (labelled items);
``unlabeled.csv`` (items without labels, for pre-training); ``report.json``.

Two passes over the files, each a stream (item ids are remembered as 8-byte hashes, tags as
counts), so a file of millions of rows never sits in memory. The first checks every row, drops
the unusable ones with a reason (a bad row, no tags, a repeated id, a missing or, with
``image_check="decode"``, undecodable image) and counts the tags of the training split and the
unlabeled items, which decide the vocabulary (``min_count``, ``max_vocab``: validation and test
tags never choose it). The second writes each kept item, its tags restricted to the vocabulary,
to its split. An item's split is decided by a hash of the seed and its id, so it stays in its
split when rows are added or reordered.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from magneto.data.annotation_files import AnnotationWriter, iter_records
from magneto.data.annotations import Annotation, build_annotation
from magneto.data.vocabulary import Vocabulary, normalize_tag
from magneto.errors import DataError
from magneto.sources.image_files import ImageCheck, check_images
from magneto.sources.own_report import OwnDataReport

__all__ = ["OUTPUT_FILES", "OwnDataReport", "OwnDataSettings", "prepare_own", "split_of"]

OUTPUT_FILES = ("train.csv", "val.csv", "test.csv", "unlabeled.csv", "vocab.csv", "report.json")
SPLITS = ("train", "val", "test", "unlabeled")
Split = Literal["train", "val", "test", "unlabeled"]
CHUNK = 512  # rows whose images are checked together


class OwnDataSettings(BaseModel):
    """How ``magneto prepare own`` splits, filters and checks (the flags of the command)."""

    model_config = ConfigDict(extra="forbid")

    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of labelled items in val")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="share in test (0: no test.csv)")
    seed: int = Field(0, description="seed of the split (the same seed, the same split)")
    min_count: int = Field(1, ge=1, description="tags seen fewer times in train are dropped")
    max_vocab: int | None = Field(None, ge=1, description="keep the most frequent tags only")
    max_len: int | None = Field(None, ge=1, description="drop items with more tags than this")
    image_check: ImageCheck = Field("exists", description="none, exists or decode")
    workers: int = Field(1, ge=1, description="processes for image_check decode")

    @model_validator(mode="after")
    def _room_for_train(self) -> OwnDataSettings:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10 % for train")
        return self


def split_of(item_id: str, settings: OwnDataSettings) -> Split:
    """The split of a labelled item: a uniform number from a hash of (seed, id)."""
    digest = hashlib.sha256(f"{settings.seed}\0{item_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < settings.test_fraction:
        return "test"
    return "val" if u < settings.test_fraction + settings.val_fraction else "train"


def _id_key(item_id: str) -> bytes:
    return hashlib.blake2b(item_id.encode(), digest_size=8).digest()


@dataclass
class _Row:
    annotation: Annotation
    split: Split


@dataclass
class _Scan:
    """What the first pass learnt: the tag counts that decide the vocabulary, and which
    items' images are unusable."""

    counts: Counter[str] = field(default_factory=Counter)
    spellings: dict[str, Counter[str]] = field(default_factory=dict)
    bad_images: set[bytes] = field(default_factory=set)
    with_image: bool = False


def _rows(
    sources: Sequence[Path], settings: OwnDataSettings, report: OwnDataReport | None
) -> Iterator[_Row]:
    """The valid, first-seen rows of every source, in order; with ``report``, each dropped
    row is counted there with its reason (the first pass)."""
    seen: set[bytes] = set()
    for path in sources:
        for line, fields in iter_records(path):
            if report is not None:
                report.rows += 1
            try:
                record = build_annotation(fields, path, line, require_labels=False)
            except DataError as exc:
                if report is not None:
                    kind = "no_tags" if exc.problem.endswith("tags are empty") else "bad_row"
                    report.drop(kind, str(exc))
                continue
            key = _id_key(record.item_id)
            if key in seen:
                if report is not None:
                    report.drop(
                        "duplicate_id", f"{record.origin}: item {record.item_id} appeared before"
                    )
                continue
            seen.add(key)
            split: Split = (
                "unlabeled" if record.labels is None else split_of(record.item_id, settings)
            )
            yield _Row(record, split)


def _chunks(rows: Iterator[_Row]) -> Iterator[list[_Row]]:
    chunk: list[_Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _scan(
    sources: Sequence[Path],
    image_root: Path | None,
    settings: OwnDataSettings,
    report: OwnDataReport,
) -> _Scan:
    scan = _Scan()
    for chunk in _chunks(_rows(sources, settings, report)):
        missing: set[str] = set()
        corrupt: set[str] = set()
        if image_root is not None and settings.image_check != "none":
            pairs = [(r.annotation.item_id, r.annotation.image_path) for r in chunk]
            missing, corrupt = check_images(
                pairs, image_root, settings.image_check, settings.workers, progress=False
            )
        for row in chunk:
            record = row.annotation
            scan.with_image = scan.with_image or record.image is not None
            if record.item_id in missing or record.item_id in corrupt:
                kind = "missing_image" if record.item_id in missing else "bad_image"
                problem = "not found" if kind == "missing_image" else "does not decode"
                report.drop(kind, f"{record.origin}: image {record.image_path} {problem}")
                scan.bad_images.add(_id_key(record.item_id))
                continue
            if row.split in ("train", "unlabeled"):
                for tag in record.tags:
                    key = normalize_tag(tag)
                    scan.counts[key] += 1
                    scan.spellings.setdefault(key, Counter())[tag] += 1
    return scan


def _vocabulary(scan: _Scan, settings: OwnDataSettings, report: OwnDataReport) -> Vocabulary:
    """The tags seen at least ``min_count`` times in train and unlabeled, most frequent first
    (at most ``max_vocab``), each in its most common spelling."""
    report.tags_seen = len(scan.counts)
    frequent = sorted(
        (k for k, c in scan.counts.items() if c >= settings.min_count),
        key=lambda k: (-scan.counts[k], k),
    )
    report.tags_rare = len(scan.counts) - len(frequent)
    kept = frequent[: settings.max_vocab] if settings.max_vocab else frequent
    report.tags_cut = len(frequent) - len(kept)
    if not kept:
        raise DataError(
            ", ".join(map(str, report.sources)),
            None,
            f"no tag of the training split occurs at least {settings.min_count} times "
            "(--min-count): there is nothing to build a vocabulary from",
        )
    words = [scan.spellings[k].most_common(1)[0][0] for k in kept]
    report.vocabulary = len(words)
    return Vocabulary(words)


def _restricted(record: Annotation, vocabulary: Vocabulary) -> Annotation:
    known = [i for i, tag in enumerate(record.tags) if tag in vocabulary]
    labels = None if record.labels is None else tuple(record.labels[i] for i in known)
    return Annotation(
        item_id=record.item_id,
        tags=tuple(record.tags[i] for i in known),
        labels=labels,
        image=record.image,
    )


def _check_out(out: Path, overwrite: bool) -> None:
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds {', '.join(existing)}; choose another --out or pass --overwrite"
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a directory")


def prepare_own(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    images: str | Path | None,
    settings: OwnDataSettings | None = None,
    overwrite: bool = False,
) -> OwnDataReport:
    """Check, split and write ``sources`` into ``out``; returns the data report."""
    settings = settings or OwnDataSettings()
    paths = [Path(s) for s in sources]
    out = Path(out)
    image_root = Path(images) if images is not None else None
    if image_root is None and settings.image_check != "none":
        raise DataError(out, None, "pass --images DIR (or --check-images none for tags only)")
    if image_root is not None and not image_root.is_dir():
        raise DataError(image_root, None, "image directory not found")
    for path in paths:
        if not path.is_file():
            raise DataError(path, None, "annotation file not found")
    _check_out(out, overwrite)
    report = OwnDataReport(sources=[str(p) for p in paths], settings=settings.model_dump())
    scan = _scan(paths, image_root, settings, report)
    vocabulary = _vocabulary(scan, settings, report)
    out.mkdir(parents=True, exist_ok=True)
    _write(paths, out, vocabulary, scan, settings, report)
    return report


def _write(
    sources: Sequence[Path],
    out: Path,
    vocabulary: Vocabulary,
    scan: _Scan,
    settings: OwnDataSettings,
    report: OwnDataReport,
) -> None:
    writers = {
        split: AnnotationWriter(
            out / f"{split}.csv", labelled=split != "unlabeled", with_image=scan.with_image
        )
        for split in SPLITS
    }
    try:
        for row in _rows(sources, settings, None):
            record = row.annotation
            if _id_key(record.item_id) in scan.bad_images:
                continue
            kept = _restricted(record, vocabulary)
            report.count_tags(row.split, len(record.tags), len(kept.tags))
            if not kept.tags:
                report.drop(
                    "no_known_tag", f"{record.origin}: none of its tags is in the vocabulary"
                )
                continue
            if settings.max_len is not None and len(kept.tags) > settings.max_len:
                problem = f"{len(kept.tags)} tags, more than --max-len {settings.max_len}"
                report.drop("too_many_tags", f"{record.origin}: {problem}")
                continue
            writers[row.split].write(kept)
            report.add_item(row.split, kept)
        report.check_usable()  # before anything the user had is replaced
    except BaseException as exc:
        for writer in writers.values():
            writer.__exit__(type(exc), exc, None)
        raise
    for writer in writers.values():
        writer.__exit__(None, None, None)
    vocabulary.save(out / "vocab.csv")
    for writer in writers.values():
        if writer.count == 0:  # an empty split is no file: training and pre-training say so
            writer.path.unlink(missing_ok=True)
    _save_report(out / "report.json", report.as_dict())


def _save_report(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
