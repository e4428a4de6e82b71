"""Annotation records: what one item of an annotation file is, and its validation.

CSV columns: ``item_id,tags`` plus ``important_tags`` (comma-joined subset of the tags) and/or
``label`` (comma-joined 0/1 aligned with the tags), plus optional ``image`` (a path relative to
the image directory, used when the image is not ``<item_id>.jpg``). JSONL lines carry the same
fields, where ``tags``/``important_tags``/``label`` may be JSON lists. Unlabelled files (for
pre-training and inference) only need ``item_id`` and ``tags``.

Every problem is reported as a :class:`DataError` naming the file, the line and what is wrong.
Reading and writing whole files (CSV, JSONL, Parquet) is :mod:`magneto.data.annotation_files`'s
job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from magneto.data.vocabulary import dedupe_tags, normalize_tag
from magneto.errors import DataError

CSV_COLUMNS_LABELLED = ("item_id", "tags", "important_tags", "label")


@dataclass(frozen=True)
class Annotation:
    """One item: its tags in the user's spelling and, when labelled, which are important."""

    item_id: str
    tags: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    image: str | None = None
    line: int | None = None
    source: str | None = None  # the file the record was read from

    @property
    def origin(self) -> str | None:
        """``FILE:LINE`` of the record, for messages."""
        if self.source is None:
            return None
        return f"{self.source}:{self.line}" if self.line is not None else self.source

    @property
    def important_tags(self) -> tuple[str, ...]:
        if self.labels is None:
            return ()
        return tuple(t for t, y in zip(self.tags, self.labels, strict=True) if y)

    @property
    def image_path(self) -> str:
        """Path of the image relative to the image directory."""
        return self.image if self.image else f"{self.item_id}.jpg"


def _split_field(value: Any) -> list[str]:
    """Accept a JSON list or a comma-joined string; return the raw items."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value)
    return [part for part in text.split(",")] if text.strip() else []


def _parse_labels(raw: Any, path: Path, line: int | None) -> list[int]:
    items = raw if isinstance(raw, list) else _split_field(raw)
    labels: list[int] = []
    for item in items:
        text = str(item).strip()
        if text in ("0", "1", "0.0", "1.0", "True", "False", "true", "false"):
            labels.append(1 if text in ("1", "1.0", "True", "true") else 0)
        else:
            raise DataError(path, line, f"label value {text!r} is not 0 or 1")
    return labels


def _check_image_field(image: Any, path: Path, line: int | None) -> str | None:
    if image is None or str(image).strip() == "":
        return None
    text = str(image).strip().replace("\\", "/")
    rel = PurePosixPath(text)
    if rel.is_absolute() or ".." in rel.parts or (len(text) > 1 and text[1] == ":"):
        raise DataError(path, line, f"image path {image!r} must be relative to the image directory")
    return text


def build_annotation(
    fields: dict[str, Any], path: Path, line: int | None, *, require_labels: bool
) -> Annotation:
    """Validate one record's fields and build the annotation."""
    item_id = str(fields.get("item_id") or "").strip()
    if not item_id:
        raise DataError(path, line, "item_id is empty")
    raw_tags = _split_field(fields.get("tags"))
    # A blank important_tags cell is "not labelled" (an unlabeled item in a mixed file); an item
    # none of whose tags is important says so with label 0,0,... or a JSON empty list.
    important_field = fields.get("important_tags")
    has_important = isinstance(important_field, list) or (
        important_field is not None and str(important_field).strip() != ""
    )
    label_field = fields.get("label")
    has_label = isinstance(label_field, list) or (
        label_field is not None and str(label_field).strip() != ""
    )

    labels: list[int] | None = None
    if has_label:
        labels = _parse_labels(label_field, path, line)
        if len(labels) != len(raw_tags):
            raise DataError(
                path,
                line,
                f"item {item_id}: label has {len(labels)} values "
                f"but there are {len(raw_tags)} tags",
            )
    # Normalise and de-duplicate the tags; duplicated tags must agree on their label.
    tags = dedupe_tags(raw_tags)
    if not tags:
        raise DataError(path, line, f"item {item_id}: tags are empty")
    if labels is not None:
        by_key: dict[str, int] = {}
        for raw, y in zip(raw_tags, labels, strict=True):
            key = normalize_tag(raw)
            if not key:
                if y:
                    raise DataError(path, line, f"item {item_id}: an empty tag is labelled 1")
                continue
            if key in by_key and by_key[key] != y:
                raise DataError(
                    path,
                    line,
                    f"item {item_id}: tag {raw.strip()!r} appears twice with different labels",
                )
            by_key[key] = y
        labels = [by_key[t.key] for t in tags]
    if has_important:
        important = dedupe_tags(_split_field(fields["important_tags"]))
        tag_keys = {t.key for t in tags}
        missing = [t.text for t in important if t.key not in tag_keys]
        if missing:
            raise DataError(
                path, line, f"item {item_id}: important tag {missing[0]!r} is not among its tags"
            )
        from_important = [1 if t.key in {i.key for i in important} else 0 for t in tags]
        if labels is not None and labels != from_important:
            raise DataError(path, line, f"item {item_id}: label and important_tags disagree")
        labels = from_important
    if require_labels and labels is None:
        raise DataError(path, line, f"item {item_id}: no important_tags or label given")
    return Annotation(
        item_id=item_id,
        tags=tuple(t.text for t in tags),
        labels=tuple(labels) if labels is not None else None,
        image=_check_image_field(fields.get("image"), path, line),
        line=line,
        source=str(path),
    )
