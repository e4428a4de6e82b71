"""Annotation files: the canonical CSV (both of the reference's forms), JSONL and Parquet.

Read as streams (a file of millions of items never sits in memory unless the caller lists it),
every record validated by :func:`magneto.data.annotations.build_annotation`; written through a
temporary file and a rename, so an interrupted write never leaves half a file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from magneto.data.annotations import CSV_COLUMNS_LABELLED, Annotation, build_annotation
from magneto.data.text_files import file_problem, utf8_lines
from magneto.errors import DataError, MagnetoError

__all__ = [
    "CSV_COLUMNS_LABELLED",
    "AnnotationWriter",
    "iter_annotations",
    "iter_records",
    "parquet_module",
    "read_annotations",
    "write_annotations",
]

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def parquet_module() -> Any:
    """``pyarrow.parquet``, or one line saying how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MagnetoError("Parquet needs pyarrow: pip install 'magneto-ets[parquet]'") from None
    return pq


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


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a Parquet file (numbered from 1), a record batch at a time; list columns
    (``tags: list<string>``) come as lists, which the record parser accepts."""
    pq = parquet_module()
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own types for files that are not Parquet
        raise DataError(path, None, f"not a Parquet file ({exc})") from None
    columns = set(parquet.schema_arrow.names)
    if not {"item_id", "tags"} <= columns:
        raise DataError(path, None, "columns must include item_id and tags")
    row = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for fields in batch.to_pylist():
            row += 1
            yield row, fields


def iter_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, raw fields) of a CSV, JSONL or Parquet file (by its extension), unvalidated:
    for callers that decide themselves what a bad record costs."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise DataError(path, None, f"annotation file {problem}")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return _iter_parquet(path)
    return _iter_jsonl(path) if suffix in JSONL_SUFFIXES else _iter_csv(path)


def iter_annotations(
    path: str | Path, *, require_labels: bool = True
) -> Iterator[tuple[int, Annotation]]:
    """(line, record) of an annotation file, one at a time, each validated; for files too
    large to hold as a list."""
    for line, fields in iter_records(path):
        yield line, build_annotation(fields, Path(path), line, require_labels=require_labels)


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


class AnnotationWriter:
    """Writes records as CSV one at a time (both label forms when ``labelled``, plus ``image``
    when ``with_image``), to a temporary file renamed into place when the block ends without an
    error; after an error the temporary file is removed and nothing is replaced."""

    def __init__(self, path: str | Path, *, labelled: bool, with_image: bool) -> None:
        self.path = Path(path)
        self.labelled, self.with_image = labelled, with_image
        self.count = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._handle = self._tmp.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle)
        header = ["item_id", "tags"]
        header += ["important_tags", "label"] if labelled else []
        header += ["image"] if with_image else []
        self._writer.writerow(header)

    def write(self, record: Annotation) -> None:
        for tag in record.tags:
            if "," in tag:
                raise ValueError(f"item {record.item_id}: tag {tag!r} contains a comma")
        row: list[str] = [record.item_id, ",".join(record.tags)]
        if self.labelled:
            labels: Sequence[int] = record.labels or ()
            row += [",".join(record.important_tags), ",".join(str(y) for y in labels)]
        if self.with_image:
            row.append(record.image or "")
        self._writer.writerow(row)
        self.count += 1

    def __enter__(self) -> AnnotationWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._handle.close()
        if kind is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def write_annotations(
    path: str | Path, records: Iterable[Annotation], *, labelled: bool | None = None
) -> int:
    """Write records as CSV (both label forms, plus ``image`` when any record has one)."""
    records = list(records)
    if labelled is None:
        labelled = any(r.labels is not None for r in records)
    with_image = any(r.image for r in records)
    with AnnotationWriter(path, labelled=labelled, with_image=with_image) as writer:
        for record in records:
            writer.write(record)
    return writer.count
