"""Micro-batching: concurrent requests share one forward pass, off the event loop.

Requests are decoded in a thread pool (``prepare``), then queued for one model thread. The
model thread takes whatever is queued, up to ``max_batch_size``. It waits up to
``max_wait_ms`` for more only while other requests are still being decoded, so a lone request
never waits and a burst fills its batch. A request that fails does so alone: decoding errors
never reach the queue, and if a batched forward pass fails, its items are retried one by one
so that only the culprit gets the error.

Every PyTorch call (loading the model too) runs on the one model thread: each thread that
enters a parallel CPU kernel gets its own OpenMP team, and once two teams exist libgomp stops
spinning its idle workers, which made each forward pass about twice as slow on 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from magneto.predictor import Prediction, Predictor, PreparedItem

log = logging.getLogger("magneto.service")


class QueueFull(Exception):
    """More items are waiting than ``max_queue`` allows."""


class NotRunning(Exception):
    """The batcher is stopped (the service is shutting down)."""


@dataclass
class _Job:
    item: PreparedItem
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(
        self,
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        preprocess_threads: int = 2,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.predictor: Predictor | None = None
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="magneto-model")
        self._prepare_pool = ThreadPoolExecutor(
            preprocess_threads, thread_name_prefix="magneto-decode"
        )
        self._preparing = 0
        self._arrived = asyncio.Event()
        self._running = False

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self, load: Callable[[], Predictor]) -> Predictor:
        """Build the predictor on the model thread, then start taking requests."""
        loop = asyncio.get_running_loop()
        self.predictor = await loop.run_in_executor(self._model_thread, load)
        self._queue = asyncio.Queue()
        self._running = True
        self._worker = asyncio.create_task(self._run(), name="magneto-batcher")
        return self.predictor

    async def stop(self) -> None:
        """Finish everything already queued, then stop."""
        self._running = False
        if self._queue is not None:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._model_thread.shutdown(wait=True)
        self._prepare_pool.shutdown(wait=True)

    async def run_in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run CPU work (decoding) in the preprocessing threads, counted as 'arriving soon'."""
        self._preparing += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._prepare_pool, fn, *args)
        finally:
            self._preparing -= 1
            self._arrived.set()

    async def submit(self, items: Sequence[PreparedItem]) -> list[Prediction]:
        """Queue prepared items; resolves when their predictions are ready."""
        if not self._running or self._queue is None:
            raise NotRunning("the service is shutting down")
        if self._queue.qsize() + len(items) > self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} items are already waiting")
        loop = asyncio.get_running_loop()
        jobs = [_Job(item, loop.create_future()) for item in items]
        for job in jobs:
            self._queue.put_nowait(job)
        self._arrived.set()
        return list(await asyncio.gather(*(job.future for job in jobs)))

    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if self._preparing == 0 or remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._queue is not None and self.predictor is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._model_thread, self.predictor.score_prepared, [j.item for j in batch]
                )
                outcomes: list[Any] = list(results)
            except Exception:  # isolate the failing item: score the batch one by one
                log.exception("a batch of %d failed; retrying its items alone", len(batch))
                outcomes = []
                for job in batch:
                    try:
                        outcomes.append(
                            (
                                await loop.run_in_executor(
                                    self._model_thread, self.predictor.score_prepared, [job.item]
                                )
                            )[0]
                        )
                    except Exception as exc:
                        outcomes.append(exc)
            seconds = time.perf_counter() - started
            if self.on_batch is not None:
                self.on_batch(len(batch), seconds)
            for job, outcome in zip(batch, outcomes, strict=True):
                if not job.future.done():
                    if isinstance(outcome, Exception):
                        job.future.set_exception(outcome)
                    else:
                        job.future.set_result(outcome)
                self._queue.task_done()
