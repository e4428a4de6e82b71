"""A bulk job as both engines see it: what to score and where (the flags of
``magneto summarize``), what identifies it for resuming, its checks, and its report.

The local engine (:mod:`magneto.bulk.local`) and the Ray engine (:mod:`magneto.bulk.ray_engine`)
both import this module and never each other.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magneto.bulk.manifest import Manifest, ManifestIndex, Shard
from magneto.bulk.results import ResultStore, Summary
from magneto.bulk.rows import DecisionOptions
from magneto.errors import MagnetoError

if TYPE_CHECKING:
    from magneto.infer.runtimes.calibration import Calibration


@dataclass
class BulkJob:
    """What to score and where the results go (the flags of ``magneto summarize``)."""

    checkpoint: Path
    data: Path
    out: Path
    images: Path | None = None
    batch_size: int = 64
    workers: int = 2
    shard_rows: int = 1024
    device: str = "auto"
    runtime: str = "auto"  # how the image trunk runs (magneto.infer.runtimes)
    calibration: Calibration | None = None  # images for the int8 runtime
    options: DecisionOptions = field(default_factory=DecisionOptions)
    progress: bool = True
    part: tuple[int, int] | None = None  # (I, N): the I-th of N disjoint parts, 1-based

    def owns(self, shard: int) -> bool:
        """Whether this job's part scores ``shard`` (every N-th shard, from the I-th)."""
        return self.part is None or shard % self.part[1] == self.part[0] - 1

    def description(self, rows: int) -> dict[str, Any]:
        """What identifies the job: resuming with anything else changed is refused."""
        stat = self.data.stat()
        return {
            "manifest": str(self.data.resolve()),
            "manifest_bytes": stat.st_size,
            "manifest_mtime_ns": stat.st_mtime_ns,
            "rows": rows,
            "shard_rows": self.shard_rows,
            "checkpoint_sha256": file_digest(self.checkpoint),
            "images": str(self.images.resolve()) if self.images else None,
            "options": vars(self.options),
        }


@dataclass
class BulkReport:
    summary: Summary
    rows_this_run: int
    seconds: float
    resumed_shards: int
    merged: bool = True  # False: a part finished, others are still to come
    missing_parts: int = 0  # shards of the whole job not committed yet (when not merged)
    complete: bool = False  # True: --out was already this job's, nothing was redone
    runtime: str | None = None  # the runtime that ran the image trunk (None: nothing ran)

    def as_dict(self) -> dict[str, Any]:
        rate = self.rows_this_run / self.seconds if self.seconds else 0.0
        return {
            **self.summary.as_dict(),
            "rows_this_run": self.rows_this_run,
            "resumed_shards": self.resumed_shards,
            "seconds": round(self.seconds, 3),
            "items_per_second": round(rate, 1),
            "merged": self.merged,
            "missing_shards": self.missing_parts,
            "already_complete": self.complete,
            "runtime": self.runtime,
        }


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_job(job: BulkJob, uses_images: bool) -> None:
    """Everything that can be wrong before any result is written."""
    if job.batch_size < 1 or job.shard_rows < 1:
        raise MagnetoError("--batch-size and --shard-rows must be at least 1")
    if uses_images and job.images is None:
        raise MagnetoError("this model reads images: pass --images DIR")
    if job.images is not None and not job.images.is_dir():
        raise MagnetoError(f"image directory not found: {job.images}")


def finished_job(job: BulkJob) -> BulkReport | None:
    """The report of a job whose ``--out`` this very job already wrote (a scheduler's retry
    of a finished task): nothing is redone and nothing loaded."""
    if not job.out.is_file():
        return None
    index = Manifest(job.data).index(job.shard_rows)
    summary = ResultStore(job.out, job.description(index.rows)).finished()
    if summary is None:
        return None
    return BulkReport(summary, 0, 0.0, len(index.shards), complete=True)


def open_job(job: BulkJob) -> tuple[Manifest, ManifestIndex, ResultStore, list[Shard]]:
    """Index the manifest, open (or resume) the results; returns the shards of this job's part
    still to do. Parts of one job share ``OUT.parts/``: each commits only its own shards."""
    manifest = Manifest(job.data)
    index = manifest.index(job.shard_rows)
    store = ResultStore(job.out, job.description(index.rows))
    own = {s.number for s in index.shards if job.owns(s.number)}
    done = store.open(own)
    return manifest, index, store, [s for s in index.shards if s.number in own - done]


def close_job(
    job: BulkJob, index: ManifestIndex, store: ResultStore, rows: int, started: float, resumed: int
) -> BulkReport:
    """Merge the parts into ``--out`` once every shard is committed (the last part of a
    sharded job to finish does it); otherwise report what this part did."""
    seconds = time.perf_counter() - started
    missing = store.missing(len(index.shards))
    if not missing:
        summary = store.finish(len(index.shards))
        if summary is not None:
            return BulkReport(summary, rows, seconds, resumed)
    own = [n for n in range(len(index.shards)) if job.owns(n)]
    return BulkReport(store.summary_of(own), rows, seconds, resumed, False, len(missing))


def merge_job(job: BulkJob) -> Summary:
    """``magneto summarize --merge``: join the committed parts of every shard into ``--out``."""
    index = Manifest(job.data).index(job.shard_rows)
    store = ResultStore(job.out, job.description(index.rows))
    if not store.parts.is_dir():
        if job.out.is_file():
            raise MagnetoError(f"{job.out} is already merged")
        raise MagnetoError(f"{store.parts} not found: no part of this job has run yet")
    store.open(set())
    missing = store.missing(len(index.shards))
    if missing:
        raise MagnetoError(
            f"{len(missing)} of {len(index.shards)} shards are not committed yet "
            f"(first: shard {missing[0]}); run the unfinished parts again, then merge"
        )
    summary = store.finish(len(index.shards))
    if summary is None:
        raise MagnetoError(f"another process is merging {store.parts} right now")
    return summary
