"""``magneto summarize``: score a whole library's manifest, streamed, resumable, one row each.

The manifest is cut into shards (:mod:`magneto.manifest`); DataLoader workers read their
shards, decode and resize the images (JPEGs at a reduced DCT scale) and pad each batch's tag
lists, while the main process only runs the model; results are committed a shard at a time
(:mod:`magneto.bulk_results`). Memory depends on the batch and shard sizes, not on the
manifest's length. The Ray engine (:mod:`magneto.bulk_ray`) runs the same rows on a cluster.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from magneto.bulk_results import ResultStore, Summary
from magneto.bulk_rows import DecisionOptions, RowPreparer, result_row
from magneto.dataset import Batch, worker_init
from magneto.errors import MagnetoError
from magneto.manifest import Manifest, ManifestIndex, Shard
from magneto.predictor import Predictor
from magneto.preparation import PreparedItem, collate


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


@dataclass
class WorkBatch:
    """Up to ``batch_size`` rows of one shard: error rows done, the rest collated."""

    shard: Shard
    errors: dict[int, dict[str, Any]]  # row -> its error row
    rows: list[int]  # rows of ``items``, in order
    items: list[PreparedItem]
    batch: Batch | None

    def __len__(self) -> int:
        return len(self.errors) + len(self.items)

    def pin_memory(self) -> WorkBatch:
        """Called by DataLoader(pin_memory=True) so the copy to the GPU can overlap."""
        if self.batch is not None:
            self.batch = self.batch.pin_memory()
        return self


def prepare_rows(
    manifest: Manifest, shard: Shard, prepare: RowPreparer, batch_size: int, padding: int
) -> Iterator[WorkBatch]:
    """A shard's rows, decoded and collated batch by batch."""
    errors: dict[int, dict[str, Any]] = {}
    rows: list[int] = []
    items: list[PreparedItem] = []
    for item in manifest.read(shard):
        outcome = prepare(manifest.path, item)
        if isinstance(outcome, PreparedItem):
            rows.append(item.row)
            items.append(outcome)
        else:
            errors[item.row] = outcome
        if len(errors) + len(items) == batch_size:
            yield _work(shard, errors, rows, items, padding)
            errors, rows, items = {}, [], []
    if errors or items:
        yield _work(shard, errors, rows, items, padding)


def _work(
    shard: Shard,
    errors: dict[int, dict[str, Any]],
    rows: list[int],
    items: list[PreparedItem],
    padding: int,
) -> WorkBatch:
    batch, _ = collate(items, padding)
    for item in items:  # the images now live in the batch; don't ship them twice
        item.image = None
    return WorkBatch(shard, errors, rows, items, batch)


class ShardStream(IterableDataset):
    """Each DataLoader worker takes every n-th remaining shard."""

    def __init__(
        self, path: Path, shards: list[Shard], prepare: RowPreparer, batch_size: int, padding: int
    ) -> None:
        self.path, self.shards, self.prepare = path, shards, prepare
        self.batch_size, self.padding = batch_size, padding

    def __iter__(self) -> Iterator[WorkBatch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        manifest = Manifest(self.path)
        for shard in self.shards[worker::workers]:
            yield from prepare_rows(manifest, shard, self.prepare, self.batch_size, self.padding)


def _unbatched(work: WorkBatch) -> WorkBatch:
    return work


def shard_loader(stream: ShardStream, workers: int, *, pin_memory: bool = False) -> DataLoader:
    """``workers`` processes (one thread each) prepare the stream's batches ahead."""
    return DataLoader(
        stream,
        batch_size=None,
        collate_fn=_unbatched,
        num_workers=workers,
        worker_init_fn=worker_init if workers else None,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
    )


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


def run_local(job: BulkJob) -> BulkReport:
    """Score every row not yet committed, on this machine."""
    started = time.perf_counter()
    predictor = Predictor.from_checkpoint(job.checkpoint, device=job.device, amp=job.amp)
    check_job(job, predictor.uses_images)
    manifest, index, store, todo = open_job(job)
    stream = ShardStream(
        manifest.path,
        todo,
        RowPreparer(predictor.preparer, job.images, index.duplicates, job.options),
        job.batch_size,
        predictor.vocabulary.padding_index,
    )
    loader = shard_loader(stream, job.workers, pin_memory=predictor.device.type == "cuda")
    remaining = sum(s.count for s in todo)
    with tqdm(total=remaining, unit="item", disable=not job.progress, smoothing=0.1) as bar:
        for work in loader:
            for row, result in work.errors.items():
                store.add(work.shard, row, result)
            if work.items:
                predictions = predictor.score_prepared(work.items, batch=work.batch)
                for row, item, prediction in zip(work.rows, work.items, predictions, strict=True):
                    store.add(work.shard, row, result_row(row, item.request.item_id, prediction))  # type: ignore[arg-type]
            bar.update(len(work))
    summary = store.finish(len(index.shards))
    return BulkReport(
        summary, remaining, time.perf_counter() - started, len(index.shards) - len(todo)
    )


def run_bulk(job: BulkJob, engine: str = "local", **ray_options: Any) -> BulkReport:
    if engine == "ray":
        from magneto.bulk_ray import run_ray

        return run_ray(job, **ray_options)
    if engine != "local":
        raise MagnetoError(f"unknown engine {engine!r}: use local or ray")
    return run_local(job)
