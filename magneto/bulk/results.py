"""Results of a bulk job: committed shard by shard, merged into one file at the end.

While a job runs, its results live beside ``--out`` in ``OUT.parts/``: ``job.json`` (what the
job is: manifest, its size and time stamp, shard size, checkpoint digest, options) and one
``part-NNNNNN.jsonl`` / ``.parquet`` per finished shard, written to a temporary name, flushed
and renamed, so a part is either whole or absent. A job killed at any moment (SIGKILL too)
and started again with the same ``--out`` skips the shards that have a part and redoes the
rest: no row is lost or written twice, and a half-written part is never read back. At the end
the parts are merged into ``OUT`` (again through a temporary file and a rename) and
``OUT.parts/`` is removed.

Several processes may share one ``OUT.parts/`` (``magneto summarize --shard I/N`` on a Slurm
array or a Kubernetes indexed job): each commits only its own shards, temporary files carry the
writer's pid, and the merge is taken by one process at a time (``merging.lock``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magneto.bulk.manifest import Shard
from magneto.data.annotation_files import parquet_module
from magneto.errors import MagnetoError

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def parquet_schema(explain: bool = False, grid: bool = False) -> Any:
    """The results' Parquet schema; ``explain`` and ``grid`` add the explanation fields."""
    import pyarrow as pa

    fields = [
        ("tag", pa.string()),
        ("score", pa.float64()),
        ("kept", pa.bool_()),
        ("alpha", pa.float64()),
        ("known", pa.bool_()),
    ]
    if explain or grid:
        fields += [("reason", pa.string()), ("tag_score", pa.float64())]
        fields += [("image_score", pa.float64())]
    if grid:
        fields.append(("attention", pa.list_(pa.list_(pa.float64()))))
    columns = [
        ("item_id", pa.string()),
        ("row", pa.int64()),
        ("kept_tags", pa.list_(pa.string())),
        ("tags", pa.list_(pa.struct(fields))),
        ("unknown_tags", pa.list_(pa.string())),
        ("threshold", pa.float64()),
        ("error_kind", pa.string()),
        ("error", pa.string()),
    ]
    if grid:
        columns.insert(6, ("attention_grid", pa.list_(pa.int64())))
    return pa.schema(columns)


def output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MagnetoError(f"{path}: results must be .jsonl (default) or .parquet")
    if fmt == "parquet":
        parquet_module()  # say now, not after the first shard, when pyarrow is missing
    return fmt


@dataclass
class Summary:
    """What the whole output holds (resumed shards included)."""

    items: int = 0
    kept: int = 0
    tags: int = 0
    unknown: int = 0
    errors: Counter = field(default_factory=Counter)

    def add(self, result: dict[str, Any]) -> None:
        self.items += 1
        if result["error_kind"]:
            self.errors[result["error_kind"]] += 1
        else:
            self.kept += len(result["kept_tags"])
        self.tags += len(result["tags"])
        self.unknown += len(result["unknown_tags"])

    def totals(self) -> dict[str, Any]:
        """The counts themselves (what ``from_totals`` reads back)."""
        return {
            "items": self.items,
            "kept": self.kept,
            "tags": self.tags,
            "unknown": self.unknown,
            "errors": dict(self.errors),
        }

    @classmethod
    def from_totals(cls, totals: dict[str, Any]) -> Summary:
        return cls(
            totals["items"],
            totals["kept"],
            totals["tags"],
            totals["unknown"],
            Counter(totals["errors"]),
        )

    def as_dict(self) -> dict[str, Any]:
        scored = self.items - sum(self.errors.values())
        return {
            "items": self.items,
            "scored": scored,
            "errors": dict(sorted(self.errors.items())),
            "kept_tags_per_item": self.kept / scored if scored else 0.0,
            "unknown_tag_rate": self.unknown / self.tags if self.tags else 0.0,
        }


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class ResultStore:
    """The parts directory of one ``--out``; commits a shard once all its rows are in."""

    def __init__(self, out: str | Path, job: dict[str, Any]) -> None:
        self.out = Path(out)
        self.format = output_format(self.out)
        self.parts = self.out.with_name(self.out.name + ".parts")
        # Beside a merged --out: what job wrote it, so that running it again is a no-op.
        self.done = self.out.with_name(self.out.name + ".job.json")
        self.job = job
        self._pending: dict[int, dict[int, dict[str, Any]]] = {}

    def open(self, own: set[int]) -> set[int]:
        """Start or resume the job; returns the shards already committed. Temporary files of
        ``own`` shards (left by a killed run of this part) are removed; others' are theirs."""
        job_file = self.parts / "job.json"
        if job_file.is_file():
            saved = json.loads(job_file.read_text())
            if saved != self.job:
                changed = sorted(k for k in self.job if saved.get(k) != self.job[k])
                raise MagnetoError(
                    f"{self.parts} belongs to another job ({', '.join(changed)} differ); "
                    "delete it to start over or choose another --out"
                )
        elif self.out.exists():
            raise MagnetoError(
                f"{self.out} already exists and was written by another job (other manifest, "
                "checkpoint or options); choose another --out or delete it"
            )
        else:
            self.parts.mkdir(parents=True, exist_ok=True)
            _write_atomic(job_file, lambda tmp: tmp.write_text(json.dumps(self.job, indent=1)))
        for stray in self.parts.glob(".part-*.tmp"):
            if int(stray.name.split("-")[1].split(".")[0]) in own:
                stray.unlink(missing_ok=True)
        return self.committed()

    def committed(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.parts.glob("part-*") if p.suffix}

    def missing(self, shards: int) -> list[int]:
        """The shards of the whole job without a committed part, in order."""
        done = self.committed()
        return [n for n in range(shards) if n not in done]

    def summary_of(self, shards: list[int]) -> Summary:
        """What the committed parts among ``shards`` hold."""
        summary = Summary()
        for shard in shards:
            if self.part_path(shard).is_file():
                for result in self.read_part(shard):
                    summary.add(result)
        return summary

    def _schema(self) -> Any:
        options = self.job.get("options", {})
        return parquet_schema(bool(options.get("explain")), bool(options.get("explain_grid")))

    def part_path(self, shard: int) -> Path:
        return self.parts / f"part-{shard:06d}.{self.format}"

    def add(self, shard: Shard, row: int, result: dict[str, Any]) -> None:
        rows = self._pending.setdefault(shard.number, {})
        rows[row] = result
        if len(rows) == shard.count:
            self._commit(shard.number, [rows[r] for r in sorted(rows)])
            del self._pending[shard.number]

    def _commit(self, shard: int, results: list[dict[str, Any]]) -> None:
        if self.format == "jsonl":
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
            _write_atomic(self.part_path(shard), lambda tmp: tmp.write_text(text, "utf-8"))
            return
        import pyarrow as pa

        pq = parquet_module()
        table = pa.Table.from_pylist(results, schema=self._schema())
        _write_atomic(self.part_path(shard), lambda tmp: pq.write_table(table, tmp))

    def read_part(self, shard: int) -> Iterator[dict[str, Any]]:
        path = self.part_path(shard)
        if self.format == "jsonl":
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    yield json.loads(line)
            return
        yield from parquet_module().read_table(path).to_pylist()

    def finish(self, shards: int) -> Summary | None:
        """Merge every part, in shard order, into ``out``; then remove the parts. None when
        another process holds the merge (it will write the same file)."""
        if self._pending:
            raise RuntimeError(f"shards {sorted(self._pending)} are incomplete")
        if not self._lock():
            return None
        summary = self.summary_of(list(range(shards)))
        _write_atomic(self.out, self._merge_into(shards))
        done = json.dumps({"job": self.job, "summary": summary.totals()}, indent=1)
        _write_atomic(self.done, lambda tmp: tmp.write_text(done))
        shutil.rmtree(self.parts)
        return summary

    def finished(self) -> Summary | None:
        """The summary of ``out`` when this very job already wrote it (else None)."""
        if self.parts.is_dir() or not self.out.is_file() or not self.done.is_file():
            return None
        try:
            saved = json.loads(self.done.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("job") != self.job:
            return None
        return Summary.from_totals(saved["summary"])

    def _lock(self) -> bool:
        """Take ``merging.lock`` (host and pid inside); a lock left by a dead process of this
        host is taken over."""
        lock = self.parts / "merging.lock"
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                host, _, pid = lock.read_text().partition(" ")
                if host != socket.gethostname() or _alive(int(pid or 0)):
                    return False
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(me)
            return True
        return False

    def _merge_into(self, shards: int) -> Any:
        def merge(tmp: Path) -> None:
            if self.format == "jsonl":
                with tmp.open("wb") as target:
                    for shard in range(shards):
                        with self.part_path(shard).open("rb") as part:
                            shutil.copyfileobj(part, target)
                return
            pq = parquet_module()
            with pq.ParquetWriter(tmp, self._schema()) as writer:
                for shard in range(shards):
                    writer.write_table(pq.read_table(self.part_path(shard)))

        return merge


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
