"""The local engine of ``magneto summarize``: a whole library's manifest, streamed, resumable,
one row each.

The manifest is cut into shards (:mod:`magneto.bulk.manifest`); DataLoader workers read their
shards, decode and resize the images (JPEGs at a reduced DCT scale) and pad each batch's tag
lists, while the main process only runs the model; results are committed a shard at a time
(:mod:`magneto.bulk.results`). Memory depends on the batch and shard sizes, not on the
manifest's length. The Ray engine (:mod:`magneto.bulk.ray_engine`) runs the same rows on a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from magneto.bulk.job import BulkJob, BulkReport, check_job, close_job, open_job
from magneto.bulk.manifest import Manifest, Shard
from magneto.bulk.rows import RowPreparer, result_row
from magneto.data.dataset import Batch, worker_init
from magneto.infer.predictor import Predictor
from magneto.infer.requests import PreparedItem, collate


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


def _unbatched(work: Any) -> Any:
    """With ``batch_size=None`` each item the stream yields is already a batch."""
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


def run_local(job: BulkJob) -> BulkReport:
    """Score every row not yet committed, on this machine."""
    started = time.perf_counter()
    predictor = Predictor.from_checkpoint(
        job.checkpoint,
        device=job.device,
        runtime=job.runtime,
        calibration=job.calibration,
        batch_size=job.batch_size,
    )
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
                    result = result_row(row, item.request.item_id, prediction, job.options)
                    store.add(work.shard, row, result)
            bar.update(len(work))
    resumed = len([s for s in index.shards if job.owns(s.number)]) - len(todo)
    report = close_job(job, index, store, remaining, started, resumed)
    report.runtime = predictor.runtime.name
    return report
