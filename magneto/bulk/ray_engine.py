"""``magneto summarize --engine ray``: the bulk job as a Ray Data pipeline, on a whole cluster.

The same rows as :func:`magneto.bulk.local.run_local`, because every step is the local engine's:
the driver indexes the manifest and opens (or resumes) the results exactly as the local job
does; Ray tasks read shards (which carry byte offsets, so any task reads any shard) and run
the :class:`~magneto.bulk.rows.RowPreparer` (decode, resize, tag lookup; unscorable rows come
out finished, as error rows); a pool of actors, each holding one
:class:`~magneto.infer.predictor.Predictor` on its own GPU, scores the rest; the driver commits the
rows shard by shard through :class:`~magneto.bulk.results.ResultStore`, so a killed job resumes
as the local one does. On a cluster, manifest, images and checkpoint must be at the same paths
on every node (a shared file system; give ``--images`` as an absolute path, since it is used as
given so that error messages match the local job's), and the nodes need ``magneto-ets``.
Where the scoring actors use CPUs only, Ray fuses decoding into them (same resources).

Between steps a row travels as plain columns (shard, row, a pickled manifest row or prepared
item, its result as a JSON string, the image as a ``(3, S, S)`` float32 tensor), never as
nested Python values whose Arrow types would depend on which rows a block happens to hold.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from magneto.bulk.job import BulkJob, BulkReport, check_job, close_job, open_job
from magneto.bulk.manifest import Manifest, Shard
from magneto.bulk.rows import DecisionOptions, RowPreparer, result_row
from magneto.errors import MagnetoError
from magneto.infer.checkpoint import Checkpoint, load_checkpoint
from magneto.infer.predictor import Predictor
from magneto.infer.requests import ItemPreparer, PreparedItem
from magneto.infer.runtimes.calibration import Calibration

Batch = dict[str, np.ndarray]


def import_ray() -> Any:
    """``ray`` with Ray Data, or one line saying how to install it."""
    try:
        import ray
        import ray.data  # Ray without the [data] extra lacks pandas and pyarrow
    except ImportError:
        raise MagnetoError("--engine ray needs Ray Data: pip install 'magneto-ets[ray]'") from None
    return ray


def read_shard(path: str, task: dict[str, Any]) -> list[dict[str, Any]]:
    """One shard's manifest rows (a task reads its shard on its own, from its byte offset)."""
    shard = Shard(**{k: int(task[k]) for k in ("number", "start", "count", "offset")})
    return [
        {"shard": shard.number, "row": item.row, "source": pickle.dumps(item)}
        for item in Manifest(path).read(shard)
    ]


def decode(
    prepare: RowPreparer, path: str, image_shape: tuple[int, ...] | None, rows: Batch
) -> Batch:
    """Manifest rows -> prepared items (image in its own column) or finished error rows."""
    items, results, images = [], [], []
    for source in rows["source"]:
        outcome = prepare(Path(path), pickle.loads(source))
        image = None
        if isinstance(outcome, PreparedItem):
            image, outcome.image = outcome.image, None  # the image goes in the tensor column
            items.append(pickle.dumps(outcome))
            results.append("")
        else:
            items.append(b"")
            results.append(json.dumps(outcome, ensure_ascii=False))
        if image_shape is not None:
            images.append(image.numpy() if image is not None else np.zeros(image_shape, "f4"))
    out = {"shard": rows["shard"], "row": rows["row"], "item": np.array(items, dtype=object)}
    out["result"] = np.array(results, dtype=object)
    if image_shape is not None:
        out["image"] = np.stack(images) if images else np.zeros((0, *image_shape), "f4")
    return out


def actor_runtime(job: BulkJob, checkpoint: Checkpoint, *, gpus: bool) -> str:
    """The runtime every CPU actor runs: ``auto`` is measured once, here, on this machine,
    rather than by actors starting together and timing each other. GPU actors choose on
    their own GPU."""
    if job.runtime != "auto" or gpus:
        return job.runtime
    chosen = Predictor(
        checkpoint,
        device=job.device,
        runtime="auto",
        calibration=job.calibration,
        batch_size=job.batch_size,
    )
    return chosen.runtime.name


class Scorer:
    """A Ray actor holding one predictor (loaded once), scoring prepared items in batches."""

    def __init__(
        self,
        checkpoint: str,
        device: str,
        runtime: str,
        calibration: Calibration | None,
        batch_size: int,
        options: DecisionOptions,
    ) -> None:
        self.predictor = Predictor.from_checkpoint(
            checkpoint,
            device=device,
            runtime=runtime,
            calibration=calibration,
            batch_size=batch_size,
        )
        self.options = options

    def __call__(self, rows: Batch) -> Batch:
        results = list(rows["result"])
        pending = [i for i, item in enumerate(rows["item"]) if len(item)]
        items: list[PreparedItem] = [pickle.loads(rows["item"][i]) for i in pending]
        if "image" in rows:
            for i, item in zip(pending, items, strict=True):
                item.image = torch.from_numpy(np.array(rows["image"][i], dtype=np.float32))
        predictions = self.predictor.score_prepared(items) if items else []
        for i, item, prediction in zip(pending, items, predictions, strict=True):
            row = int(rows["row"][i])
            item_id = item.request.item_id
            result = result_row(row, item_id, prediction, self.options)  # type: ignore[arg-type]
            results[i] = json.dumps(result, ensure_ascii=False)
        return {
            "shard": rows["shard"],
            "row": rows["row"],
            "result": np.array(results, dtype=object),
        }


def pipeline(
    ray: Any,
    job: BulkJob,
    todo: list[Shard],
    prepare: RowPreparer,
    *,
    runtime: str,
    num_gpus_per_worker: float,
    concurrency: int,
) -> Any:
    """Shards -> manifest rows (tasks) -> prepared items (tasks) -> result rows (actors)."""
    uses_images, size = prepare.preparer.uses_images, prepare.preparer.input_size
    path = str(job.data.resolve())  # workers elsewhere may not share our working directory
    scorer = {
        "checkpoint": str(job.checkpoint.resolve()),
        "device": "cuda" if num_gpus_per_worker > 0 else job.device,
        "runtime": runtime,
        "calibration": job.calibration,
        "batch_size": job.batch_size,
        "options": job.options,
    }
    return (
        ray.data.from_items([vars(s) for s in todo])
        .flat_map(partial(read_shard, path))
        .map_batches(
            partial(decode, prepare, path, (3, size, size) if uses_images else None),
            batch_size=job.batch_size,
            batch_format="numpy",
        )
        .map_batches(
            Scorer,
            fn_constructor_kwargs=scorer,
            batch_size=job.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_gpus=num_gpus_per_worker,
        )
    )


@contextmanager
def ray_session(ray: Any, address: str | None) -> Iterator[None]:
    """The Ray already running in this process, else one at ``address``, else a local one
    on every CPU; stopped at the end only if started here."""
    if ray.is_initialized():
        yield
        return
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)  # magneto -v
    level = logging.INFO if verbose else logging.ERROR
    if not verbose:  # Ray's own narration: token notices, executor plans, core_worker notes
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray says it set it, once
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    options: dict[str, Any] = dict(logging_level=level, log_to_driver=verbose)
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **options)
    if not verbose:
        for name in ("ray", "ray.data"):  # ray.init installs its handlers and levels
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


def run_ray(
    job: BulkJob,
    *,
    address: str | None = None,
    num_gpus_per_worker: float = 0.0,
    concurrency: int = 1,
) -> BulkReport:
    """Score every row not yet committed, on Ray: ``concurrency`` scoring actors with
    ``num_gpus_per_worker`` GPUs each, reading and decoding in tasks on the other CPUs."""
    ray = import_ray()
    started = time.perf_counter()
    cpus = os.cpu_count() or 1
    local = not address and not ray.is_initialized()
    if local and not num_gpus_per_worker and concurrency >= cpus:
        raise MagnetoError(  # else Ray waits forever for a CPU to read the first shard on
            f"--concurrency {concurrency} scoring actors on CPUs would leave none of this "
            f"machine's {cpus} CPUs to read and decode: use fewer"
        )
    checkpoint = load_checkpoint(job.checkpoint)  # the vocabulary; the weights go to actors
    preparer = ItemPreparer.for_checkpoint(checkpoint)
    check_job(job, preparer.uses_images)
    runtime = actor_runtime(job, checkpoint, gpus=num_gpus_per_worker > 0)
    del checkpoint
    _, index, store, todo = open_job(job)
    prepare = RowPreparer(preparer, job.images, index.duplicates, job.options)
    remaining = sum(s.count for s in todo)
    if todo:
        with ray_session(ray, address):
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True  # shards end in order: small buffer
            context.enable_progress_bars = False  # ours below counts committed rows...
            ray.util.debug.log_once("ray_data_progress_manager_disabled")  # ...say nothing
            dataset = pipeline(
                ray,
                job,
                todo,
                prepare,
                runtime=runtime,
                num_gpus_per_worker=num_gpus_per_worker,
                concurrency=concurrency,
            )
            shards = {s.number: s for s in todo}
            with tqdm(total=remaining, unit="item", disable=not job.progress) as bar:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    columns = (batch["shard"], batch["row"], batch["result"])
                    for shard, row, result in zip(*columns, strict=True):
                        store.add(shards[int(shard)], int(row), json.loads(result))
                    bar.update(len(batch["row"]))
    resumed = len([s for s in index.shards if job.owns(s.number)]) - len(todo)
    report = close_job(job, index, store, remaining, started, resumed)
    report.runtime = runtime
    return report
