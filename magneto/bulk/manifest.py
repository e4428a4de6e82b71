"""A library's manifest (CSV, JSONL or Parquet: ``item_id,tags[,image]``) read as a stream.

A manifest can hold millions of rows, so it is never loaded whole. One pass (:meth:`index`)
counts the rows, cuts them into shards of ``shard_rows`` rows, remembers where each shard
starts in the file (a byte offset for CSV/JSONL, a row number for Parquet) and finds repeated
item ids; any worker can then read any shard on its own (:meth:`read`). The pass keeps
8 bytes per row (a hash of the item id) to find repeats; everything else is per shard.

A row that cannot be parsed (invalid JSON, a CSV line over the field limit, bytes that are
not UTF-8) is not fatal: it comes back with ``problem`` set, so the job can report it in that
row's place. A file without the ``item_id`` and ``tags`` columns is refused up front.
"""

from __future__ import annotations

import csv
import hashlib
import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from magneto.data.annotation_files import parquet_module
from magneto.data.text_files import file_problem
from magneto.errors import DataError

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
REQUIRED = ("item_id", "tags")


@dataclass(frozen=True)
class Shard:
    number: int
    start: int  # first row (0-based, header excluded)
    count: int
    offset: int  # byte offset of the first row (CSV/JSONL); unused for Parquet


@dataclass
class ManifestRow:
    row: int  # 0-based, header excluded
    fields: dict[str, Any]
    problem: str | None = None  # why the row could not be parsed


@dataclass
class ManifestIndex:
    rows: int
    shards: list[Shard]
    duplicates: dict[int, int]  # row -> the row where its item id first appears


def manifest_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(path, None, "a manifest must be .csv, .jsonl/.ndjson or .parquet")
    return fmt


def _id_hash(item_id: Any) -> int:
    """A 64-bit hash of the id, never 0 (0 marks a row without an id)."""
    text = str(item_id if item_id is not None else "").strip()
    if not text:
        return 0
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest) or 1


class Manifest:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        problem = file_problem(self.path)
        if problem:
            raise DataError(self.path, None, f"manifest {problem}")
        self.format = manifest_format(self.path)
        self.columns = self._columns()

    def _columns(self) -> list[str]:
        if self.format == "parquet":
            columns = list(parquet_module().ParquetFile(self.path).schema_arrow.names)
        elif self.format == "csv":
            with self.path.open("rb") as handle:
                header = handle.readline().decode("utf-8-sig", "replace")
            columns = next(csv.reader([header]), [])
        else:
            return list(REQUIRED)  # JSONL: each line names its fields
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise DataError(self.path, 1, f"the manifest has no {' or '.join(missing)} column")
        return columns

    # -- reading -------------------------------------------------------------------------------
    def _text_rows(self, offset: int) -> Iterator[tuple[int, ManifestRow]]:
        """(byte offset after the row, the row) for every row from ``offset`` on (0: the first
        data row). Row numbers are left to the caller."""
        with self.path.open("rb") as handle:
            if offset == 0 and self.format == "csv":
                handle.readline()  # the header
            elif offset:
                handle.seek(offset)
            position = handle.tell()
            if self.format == "jsonl":
                for raw in iter(handle.readline, b""):
                    position = handle.tell()
                    if raw.strip():
                        yield position, _json_row(raw)
                return
            # One row per line: a line with an unclosed quote is one bad row, and the next line
            # is read afresh (csv would take the following lines into the quoted field).
            for raw in iter(handle.readline, b""):
                text = raw.decode("utf-8", "surrogateescape").lstrip("\ufeff")
                try:
                    values = next(csv.reader([text.rstrip("\r\n")], strict=True), [])
                except csv.Error as exc:
                    yield handle.tell(), ManifestRow(-1, {}, f"unreadable CSV row ({exc})")
                    continue
                if values:
                    yield handle.tell(), _csv_row(values, self.columns)

    def index(self, shard_rows: int) -> ManifestIndex:
        """One pass over the file: row count, shard starts and repeated item ids."""
        if shard_rows < 1:
            raise ValueError("shard_rows must be at least 1")
        hashes = array("Q")  # 8 bytes a row; 0 where the row has no usable id
        offsets: list[int] = []
        if self.format == "parquet":
            parquet = parquet_module().ParquetFile(self.path)
            for batch in parquet.iter_batches(columns=["item_id"]):
                hashes.extend(_id_hash(v) for v in batch.column(0).to_pylist())
        else:
            start = 0
            for after, row in self._text_rows(0):
                if len(hashes) % shard_rows == 0:
                    offsets.append(start)
                hashes.append(0 if row.problem else _id_hash(row.fields.get("item_id")))
                start = after
        rows = len(hashes)
        shards = [
            Shard(n, s, min(shard_rows, rows - s), offsets[n] if offsets else 0)
            for n, s in enumerate(range(0, rows, shard_rows))
        ]
        return ManifestIndex(rows, shards, _repeats(np.frombuffer(hashes, dtype=np.uint64)))

    def read(self, shard: Shard) -> Iterator[ManifestRow]:
        """The shard's rows, in order, with their row numbers."""
        if self.format == "parquet":
            yield from self._parquet_rows(shard)
            return
        rows = self._text_rows(shard.offset)
        for n in range(shard.count):
            _, row = next(rows)
            row.row = shard.start + n
            yield row

    def _parquet_rows(self, shard: Shard) -> Iterator[ManifestRow]:
        parquet = parquet_module().ParquetFile(self.path)
        wanted = [c for c in ("item_id", "tags", "image") if c in self.columns]
        first = 0
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if first + size > shard.start and first < shard.start + shard.count:
                table = parquet.read_row_group(group, columns=wanted)
                for i, fields in enumerate(table.to_pylist()):
                    if shard.start <= first + i < shard.start + shard.count:
                        yield ManifestRow(first + i, fields)
            first += size


def _json_row(raw: bytes) -> ManifestRow:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return ManifestRow(-1, {}, f"invalid JSON ({getattr(exc, 'msg', exc)})")
    if not isinstance(obj, dict):
        return ManifestRow(-1, {}, "the line is not a JSON object")
    return ManifestRow(-1, obj)


def _csv_row(values: list[str], columns: list[str]) -> ManifestRow:
    if len(values) > len(columns):
        return ManifestRow(-1, {}, "the row has more fields than the header")
    fields = dict(zip(columns, values, strict=False))
    if any(_has_surrogates(v) for v in values):
        return ManifestRow(-1, fields, "the row is not valid UTF-8")
    return ManifestRow(-1, fields)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _repeats(hashes: np.ndarray) -> dict[int, int]:
    """Rows whose id hash appeared on an earlier row -> the row where it first appeared."""
    rows = np.flatnonzero(hashes)
    order = np.argsort(hashes[rows], kind="stable")  # equal ids stay in row order
    ordered, ordered_rows = hashes[rows][order], rows[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]] if len(ordered) else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(starts, np.arange(len(ordered)), 0))
    repeated = ~starts
    return dict(
        zip(ordered_rows[repeated].tolist(), ordered_rows[first[repeated]].tolist(), strict=True)
    )
