"""A bulk job as both engines see it: what to score and where (the flags of
``magneto summarize``), what identifies it for resuming, its checks, and its report.

The local engine (:mod:`magneto.bulk.local`) and the Ray engine (:mod:`magneto.bulk.ray_engine`)
both import this module and never each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magneto.bulk.manifest import Manifest, ManifestIndex, Shard
from magneto.bulk.results import ResultStore, Summary
from magneto.bulk.rows import DecisionOptions
from magneto.errors import MagnetoError


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
    amp: str = "auto"
    options: DecisionOptions = field(default_factory=DecisionOptions)
    progress: bool = True

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

    def as_dict(self) -> dict[str, Any]:
        rate = self.rows_this_run / self.seconds if self.seconds else 0.0
        return {
            **self.summary.as_dict(),
            "rows_this_run": self.rows_this_run,
            "resumed_shards": self.resumed_shards,
            "seconds": round(self.seconds, 3),
            "items_per_second": round(rate, 1),
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


def open_job(job: BulkJob) -> tuple[Manifest, ManifestIndex, ResultStore, list[Shard]]:
    """Index the manifest, open (or resume) the results; returns the shards still to do."""
    manifest = Manifest(job.data)
    index = manifest.index(job.shard_rows)
    store = ResultStore(job.out, job.description(index.rows))
    done = store.open()
    return manifest, index, store, [s for s in index.shards if s.number not in done]
