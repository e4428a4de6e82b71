"""Micro-batching: concurrent requests share one forward pass, off the event loop.

Requests are decoded in a thread pool (``prepare``), then queued for one model thread. The
model thread takes whatever is queued, up to ``max_batch_size``. It waits up to
``max_wait_ms`` for more only while other requests are still being decoded, so a lone request
never waits and a burst fills its batch. A request that fails does so alone: decoding errors
never reach the queue, and if a batched forward pass fails, its items are retried one by one
so that only the culprit gets the error.

Backpressure: a request is turned away (``QueueFull``, a 503 with Retry-After) when more than
``max_queue`` items wait, or when the items ahead of it would keep it waiting longer than
``max_queue_wait_s`` at the model's measured pace. Without that bound, 200 clients on a model
doing 12 items/s each waited ~15 s and none was told to come back later. The pace is a moving
average over recent passes, measured from the end of the previous pass while there is a
backlog, so that what the batcher itself spends between passes counts too; a pass that runs
longer than the pace predicts raises the estimate while it runs (a neighbour taking the CPU
made passes 5x slower at once, and the pace only learnt it when they ended). Only passes
count: after a batch whose every item was abandoned, or an idle spell, the next pass is timed
from its own start (idle time counted as model time once made a server refuse 6 of 8
requests on an idle machine and ask for a retry after 527 s).

Accepted work keeps the bound too: an item whose request arrived more than
``max_queue_wait_s`` ago when its turn comes (decoding included) is not scored but answered
503 with Retry-After, so an accepted request waits about the bound and one pass at most.

Every PyTorch call (loading the model too) runs on the one model thread: each thread that
enters a parallel CPU kernel gets its own OpenMP team, and once two teams exist libgomp stops
spinning its idle workers, which made each forward pass about twice as slow on 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from magneto.infer.predictor import Prediction, Predictor, PreparedItem
from magneto.service.pace import Pace

log = logging.getLogger("magneto.service")
MAX_RETRY_AFTER_S = 60  # never ask a client to stay away longer than this


class QueueFull(Exception):
    """The model is too far behind to take more: ``retry_after_s`` says when to come back."""

    def __init__(self, message: str, retry_after_s: int = 1, reason: str = "queue_full") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class NotRunning(Exception):
    """The batcher is stopped (the service is shutting down)."""


class ClientGone(Exception):
    """The client of a request hung up before this item's work started."""


@dataclass
class _Job:
    item: PreparedItem
    future: asyncio.Future
    gone: threading.Event | None = None
    since: float = field(default_factory=time.perf_counter)  # when its request arrived

    @property
    def abandoned(self) -> bool:
        """Its caller stopped waiting (cancelled) or its client hung up while it was queued."""
        return self.future.done() or (self.gone is not None and self.gone.is_set())


class MicroBatcher:
    def __init__(
        self,
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        max_queue_wait_s: float | None = None,
        preprocess_threads: int = 2,
        on_batch: Callable[[int, float], None] | None = None,
        on_reject: Callable[[str], None] | None = None,
        on_abandon: Callable[[int], None] | None = None,
    ) -> None:
        self.predictor: Predictor | None = None
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.max_queue_wait = max_queue_wait_s
        self.on_batch = on_batch
        self.on_reject = on_reject
        self.on_abandon = on_abandon  # items left out of a pass: their clients had gone
        self.pace = Pace()
        self._in_flight = 0  # items in the forward pass under way
        self._pass_started = 0.0
        self._last_end: float | None = None  # when the last pass ended, if a backlog followed
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

    def expected_wait(self, arriving: bool = False) -> float | None:
        """Seconds until the model gets to an item queued now (None: no pass measured yet);
        ``arriving``: for a request not decoded yet, behind the items being decoded now."""
        per_item = self.pace.seconds_per_item
        if per_item is None:
            return None
        if self._in_flight:  # a pass running slower than the pace says counts at once
            running = time.perf_counter() - self._pass_started
            per_item = max(per_item, running / self._in_flight)
        ahead = self.depth + self._in_flight + (self._preparing if arriving else 0)
        return ahead * per_item

    def admit(self, count: int, arriving: bool = False) -> None:
        """Raise ``QueueFull`` unless ``count`` more items may join the queue now (see
        ``expected_wait`` for ``arriving``)."""
        wait = self.expected_wait(arriving)
        if self.depth + count > self.max_queue:
            retry = 1 if wait is None or self.max_queue_wait is None else wait - self.max_queue_wait
            self._reject(f"{self.depth} items are already waiting", retry, "queue_full")
        bound = self.max_queue_wait
        if bound is not None and wait is not None and wait > bound:
            message = f"the model is {wait:.1f} s behind (the bound is {bound:g} s)"
            self._reject(message, wait - bound, "queue_wait")

    def _reject(self, message: str, retry_after_s: float, reason: str) -> None:
        raise self._full(message, retry_after_s, reason)

    def _full(self, message: str, retry_after_s: float, reason: str) -> QueueFull:
        if self.on_reject is not None:
            self.on_reject(reason)
        return QueueFull(message, min(MAX_RETRY_AFTER_S, max(1, math.ceil(retry_after_s))), reason)

    def _late(self, since: float, now: float) -> bool:
        return self.max_queue_wait is not None and now - since > self.max_queue_wait

    def _too_late(self, since: float, now: float) -> QueueFull:
        bound = self.max_queue_wait or 0.0
        wait = self.expected_wait() or 0.0
        message = f"waited {now - since:.1f} s for the model, over the bound of {bound:g} s"
        return self._full(message, max(1.0, wait - bound), "expired")

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

    async def submit(
        self,
        items: Sequence[PreparedItem],
        gone: threading.Event | None = None,
        since: float | None = None,
    ) -> list[Prediction]:
        """Queue prepared items; resolves when their predictions are ready. When ``gone`` is
        set before their pass starts, they are left out of it and ClientGone is raised; when
        their request (arrived at ``since``) has waited past ``max_queue_wait_s`` by then,
        QueueFull is raised instead of scoring them."""
        if not self._running or self._queue is None:
            raise NotRunning("the service is shutting down")
        since = time.perf_counter() if since is None else since
        if self._late(since, time.perf_counter()):  # decoding took the time it had
            raise self._too_late(since, time.perf_counter())
        self.admit(len(items))
        loop = asyncio.get_running_loop()
        jobs = [_Job(item, loop.create_future(), gone, since) for item in items]
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

    def _without_abandoned(self, batch: list[_Job]) -> list[_Job]:
        """The jobs still wanted: no forward pass for a client that has gone, nor for a
        request that has waited past the bound (it gets its 503 now)."""
        assert self._queue is not None
        wanted, gone, now = [], 0, time.perf_counter()
        for job in batch:
            if job.abandoned:
                gone += not job.future.done()
                if not job.future.done():
                    job.future.set_exception(ClientGone())
            elif self._late(job.since, now):
                job.future.set_exception(self._too_late(job.since, now))
            else:
                wanted.append(job)
                continue
            self._queue.task_done()
        if gone and self.on_abandon is not None:
            self.on_abandon(gone)
        return wanted

    async def _run(self) -> None:
        assert self._queue is not None and self.predictor is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = self._without_abandoned(await self._collect())
            if not batch:  # nothing ran: the next pass is timed from its own start
                self._last_end = None
                continue
            started = self._pass_started = time.perf_counter()
            self._in_flight = len(batch)
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
            ended = time.perf_counter()
            if self.on_batch is not None:
                self.on_batch(len(batch), ended - started)
            self.pace.observe(len(batch), ended - (self._last_end or started))
            self._in_flight = 0
            self._last_end = ended if not self._queue.empty() else None
            for job, outcome in zip(batch, outcomes, strict=True):
                if not job.future.done():
                    if isinstance(outcome, Exception):
                        job.future.set_exception(outcome)
                    else:
                        job.future.set_result(outcome)
                self._queue.task_done()
