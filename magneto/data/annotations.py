"""Annotation files: the canonical CSV (both of the reference's forms) and JSONL.

CSV columns: ``item_id,tags`` plus ``important_tags`` (comma-joined subset of the tags) and/or
``label`` (comma-joined 0/1 aligned with the tags), plus optional ``image`` (a path relative to
the image directory, used when the image is not ``<item_id>.jpg``). JSONL lines carry the same
fields, where ``tags``/``important_tags``/``label`` may be JSON lists. Unlabelled files (for
pre-training and inference) only need ``item_id`` and ``tags``.

Every problem is reported as a :class:`DataError` naming the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from magneto.data.text_files import utf8_lines
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
    has_important = fields.get("important_tags") is not None
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


def _iter_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.DictReader(utf8_lines(handle, path))

        def csv_error(exc: csv.Error) -> DataError:
            if "field larger than field limit" in str(exc):
                problem = (
                    f"a field is longer than the CSV limit of {csv.field_size_limit()} characters"
                )
            else:
                problem = f"not a valid CSV line ({exc})"
            return DataError(path, max(reader.reader.line_num, 1), problem)

        try:
            fields = set(reader.fieldnames or [])
        except csv.Error as exc:
            raise csv_error(exc) from None
        if not {"item_id", "tags"} <= fields:
            raise DataError(path, 1, "header must contain the columns item_id and tags")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise csv_error(exc) from None
            if None in row:
                raise DataError(path, reader.line_num, "row has more fields than the header")
            yield reader.line_num, row


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
        for line_no, text in enumerate(utf8_lines(handle, path), start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(path, line_no, f"invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(path, line_no, "each line must be a JSON object")
            yield line_no, obj


def iter_annotations(
    path: str | Path, *, require_labels: bool = True
) -> Iterator[tuple[int, Annotation]]:
    """(line, record) of a CSV or JSONL annotation file, one at a time (the format chosen by
    the extension), each validated; for files too large to hold as a list."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "annotation file not found")
    rows = _iter_jsonl(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _iter_csv(path)
    for line, fields in rows:
        yield line, build_annotation(fields, path, line, require_labels=require_labels)


def read_annotations(path: str | Path, *, require_labels: bool = True) -> list[Annotation]:
    """Read and validate a whole annotation file; an item id may appear once."""
    path = Path(path)
    records: list[Annotation] = []
    first_line: dict[str, int] = {}
    for line, record in iter_annotations(path, require_labels=require_labels):
        if record.item_id in first_line:
            raise DataError(
                path,
                line,
                f"item_id {record.item_id} already appears on line {first_line[record.item_id]}",
            )
        first_line[record.item_id] = line
        records.append(record)
    if not records:
        raise DataError(path, None, "no items")
    return records


def write_annotations(
    path: str | Path, records: Iterable[Annotation], *, labelled: bool | None = None
) -> int:
    """Write records as CSV (both label forms, plus ``image`` when any record has one).

    Written through a temporary file so an interrupted write never leaves half a file.
    """
    path = Path(path)
    records = list(records)
    if labelled is None:
        labelled = any(r.labels is not None for r in records)
    with_image = any(r.image for r in records)
    header: list[str] = ["item_id", "tags"]
    if labelled:
        header += ["important_tags", "label"]
    if with_image:
        header.append("image")
    for record in records:
        for tag in record.tags:
            if "," in tag:
                raise ValueError(f"item {record.item_id}: tag {tag!r} contains a comma")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in records:
            row: list[str] = [r.item_id, ",".join(r.tags)]
            if labelled:
                labels: Sequence[int] = r.labels or ()
                row += [",".join(r.important_tags), ",".join(str(y) for y in labels)]
            if with_image:
                row.append(r.image or "")
            writer.writerow(row)
    os.replace(tmp, path)
    return len(records)
