"""The micro-batcher keeps every PyTorch call on one thread and isolates failing items."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from magneto.service.batching import ClientGone, MicroBatcher, Pace, QueueFull


class RecordingPredictor:
    """Scores an item as its own value; records which thread did the work."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.batches: list[list[int]] = []

    def score_prepared(self, items):
        self.threads.add(threading.get_ident())
        if "bad" in items:
            raise ValueError("bad item")
        self.batches.append(list(items))
        return [item * 10 for item in items]


def test_loading_and_scoring_share_one_model_thread_and_bursts_share_a_pass():
    predictor = RecordingPredictor()
    load_threads: list[int] = []

    def load():
        load_threads.append(threading.get_ident())
        return predictor

    async def scenario():
        batcher = MicroBatcher(max_batch_size=8, max_wait_ms=50)
        assert await batcher.start(load) is predictor
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(6)))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results == [[i * 10] for i in range(6)]
    assert load_threads[0] != threading.get_ident()
    assert predictor.threads == {load_threads[0]}
    assert len(predictor.batches) < 6  # the burst was grouped


def test_a_failing_item_fails_alone():
    predictor = RecordingPredictor()

    async def scenario():
        batcher = MicroBatcher(max_batch_size=8, max_wait_ms=50)
        await batcher.start(lambda: predictor)
        outcomes = await asyncio.gather(
            batcher.submit([1]),
            batcher.submit(["bad"]),
            batcher.submit([2]),
            return_exceptions=True,
        )
        await batcher.stop()
        return outcomes

    good1, bad, good2 = asyncio.run(scenario())
    assert good1 == [10] and good2 == [20]
    with pytest.raises(ValueError, match="bad item"):
        raise bad


class BlockingPredictor:
    """Holds each forward pass until released: keeps items in flight and queued at will."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def score_prepared(self, items):
        self.release.wait(30)
        return list(items)


def test_pace_starts_provisional_then_follows_recent_passes():
    pace = Pace(smoothing=0.5)
    assert pace.seconds_per_item is None
    pace.observe(1, 2.0)  # the warm-up: lazy set-up makes it slow
    assert pace.seconds_per_item == pytest.approx(2.0)
    pace.observe(10, 1.0)  # replaces the warm-up outright
    assert pace.seconds_per_item == pytest.approx(0.1)
    pace.observe(10, 3.0)  # then a moving average: (2.0 s / 10 items)
    assert pace.seconds_per_item == pytest.approx(0.2)


def test_admission_bounds_the_expected_wait_and_says_when_to_retry():
    predictor = BlockingPredictor()
    rejections: list[str] = []

    async def scenario():
        batcher = MicroBatcher(
            max_batch_size=1, max_wait_ms=0, max_queue_wait_s=5.5, on_reject=rejections.append
        )
        await batcher.start(lambda: predictor)
        batcher.pace.observe(1, 1.0)
        batcher.pace.observe(10, 10.0)  # 1 s per item
        first = asyncio.create_task(batcher.submit([0]))
        while batcher._in_flight == 0:  # the first item is in the forward pass
            await asyncio.sleep(0.01)
        queued = [asyncio.create_task(batcher.submit([i])) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        assert batcher.expected_wait() == pytest.approx(6.0)  # 1 in flight + 5 queued
        with pytest.raises(QueueFull) as caught:
            await batcher.submit([99])
        assert batcher.expected_wait(arriving=True) == pytest.approx(6.0)
        predictor.release.set()
        results = await asyncio.gather(first, *queued)
        assert batcher.expected_wait() == 0  # drained: accepted again
        assert await batcher.submit([7]) == [7]
        await batcher.stop()
        return caught.value, results

    error, results = asyncio.run(scenario())
    assert results == [[i] for i in range(6)]
    assert error.reason == "queue_wait" and error.retry_after_s == 1  # ceil(6.0 - 5.5)
    assert "6.0 s behind" in str(error)
    assert rejections == ["queue_wait"]


def test_before_any_measured_pass_only_max_queue_applies():
    predictor = BlockingPredictor()

    async def scenario():
        batcher = MicroBatcher(max_batch_size=1, max_wait_ms=0, max_queue=3, max_queue_wait_s=0.01)
        await batcher.start(lambda: predictor)
        tasks = [asyncio.create_task(batcher.submit([0]))]
        while batcher._in_flight == 0:  # the first item is in the forward pass
            await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(batcher.submit([i])) for i in range(1, 4)]
        await asyncio.sleep(0.05)
        assert batcher.depth == 3 and batcher.expected_wait() is None  # nothing measured yet
        with pytest.raises(QueueFull) as caught:
            await batcher.submit([4])
        predictor.release.set()
        await asyncio.gather(*tasks, return_exceptions=True)  # the queued ones waited too long
        await batcher.stop()
        return caught.value

    error = asyncio.run(scenario())
    assert error.reason == "queue_full" and error.retry_after_s == 1


def test_a_pass_slower_than_the_pace_raises_the_estimate_while_it_runs():
    predictor = BlockingPredictor()

    async def scenario():
        batcher = MicroBatcher(max_batch_size=1, max_wait_ms=0, max_queue_wait_s=0.2)
        await batcher.start(lambda: predictor)
        batcher.pace.observe(1, 1.0)
        batcher.pace.observe(100, 0.1)  # 1 ms per item: the queue looks short
        first = asyncio.create_task(batcher.submit([0]))
        while batcher._in_flight == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the pass has now taken 300x the pace
        wait = batcher.expected_wait()
        with pytest.raises(QueueFull):
            batcher.admit(1)
        predictor.release.set()
        await first
        await batcher.stop()
        return wait

    assert asyncio.run(scenario()) >= 0.3


def test_queued_items_of_a_client_that_has_gone_get_no_forward_pass():
    predictor = RecordingPredictor()
    gone = threading.Event()
    blocker = BlockingPredictor()

    class Gate:
        """Holds the first pass, so that the next items wait in the queue."""

        def score_prepared(self, items):
            if items == [0]:
                blocker.score_prepared(items)
            return predictor.score_prepared(items)

    async def scenario():
        batcher = MicroBatcher(max_batch_size=8, max_wait_ms=0)
        await batcher.start(Gate)
        first = asyncio.create_task(batcher.submit([0]))
        await asyncio.sleep(0.2)  # the first pass is running and held
        left = asyncio.create_task(batcher.submit([1, 2], gone))
        stayed = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0.1)
        gone.set()  # the client of items 1 and 2 hangs up while they wait
        blocker.release.set()
        outcomes = await asyncio.gather(first, left, stayed, return_exceptions=True)
        await batcher.stop()
        return outcomes

    first, left, stayed = asyncio.run(scenario())
    assert first == [0] and stayed == [30]
    assert isinstance(left, ClientGone)
    assert all(1 not in batch and 2 not in batch for batch in predictor.batches)


class FirstPassBlocks:
    """Holds the first forward pass until released; the others run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.passes = 0

    def score_prepared(self, items):
        self.passes += 1
        if self.passes == 1:
            self.release.wait(30)
        return list(items)


def test_idle_time_after_abandoned_work_is_not_counted_as_model_time():
    """The poisoning sequence: a backlog, its every item abandoned, an idle spell, then a
    burst. The idle spell used to enter the pace, and the burst was refused for minutes."""
    predictor = FirstPassBlocks()

    async def scenario():
        batcher = MicroBatcher(max_batch_size=1, max_wait_ms=0, max_queue_wait_s=0.5)
        await batcher.start(lambda: predictor)
        first = asyncio.create_task(batcher.submit([1]))
        while batcher._in_flight == 0:
            await asyncio.sleep(0.01)
        gone = threading.Event()
        abandoned = asyncio.create_task(batcher.submit([2], gone))
        await asyncio.sleep(0.05)
        gone.set()  # its client hangs up while it waits
        predictor.release.set()
        await first
        with pytest.raises(ClientGone):
            await abandoned
        await asyncio.sleep(1.0)  # idle
        await batcher.submit([3])  # one pass, measured from its own start
        burst = await asyncio.gather(
            *(batcher.submit([i]) for i in range(8)), return_exceptions=True
        )
        per_item = batcher.pace.seconds_per_item
        await batcher.stop()
        return burst, per_item

    burst, per_item = asyncio.run(scenario())
    assert not [b for b in burst if isinstance(b, Exception)]  # every request admitted
    assert per_item is not None and per_item < 0.1


def test_accepted_work_past_the_bound_is_answered_503_and_only_unscored_items_count_as_gone():
    predictor = FirstPassBlocks()
    left_out: list[int] = []

    async def scenario():
        batcher = MicroBatcher(
            max_batch_size=1, max_wait_ms=0, max_queue_wait_s=0.1, on_abandon=left_out.append
        )
        await batcher.start(lambda: predictor)
        gone = threading.Event()
        scored = asyncio.create_task(batcher.submit([1], gone))  # in the pass, then gone
        while batcher._in_flight == 0:
            await asyncio.sleep(0.01)
        late = asyncio.create_task(batcher.submit([2]))
        dropped = asyncio.create_task(batcher.submit([3], gone))
        await asyncio.sleep(0.3)  # both now waited past the bound
        gone.set()
        predictor.release.set()
        outcomes = await asyncio.gather(scored, late, dropped, return_exceptions=True)
        await batcher.stop()
        return outcomes

    scored, late, dropped = asyncio.run(scenario())
    assert scored == [1]  # its pass had started: scored, not counted as abandoned
    assert isinstance(late, QueueFull) and late.reason == "expired" and late.retry_after_s >= 1
    assert isinstance(dropped, ClientGone)
    assert left_out == [1]  # the one item left out of a pass


def test_a_retry_after_is_never_absurd():
    batcher = MicroBatcher(max_queue=1, max_queue_wait_s=1.0)
    batcher.pace.observe(1, 1.0)
    batcher.pace.observe(1, 10_000.0)  # a wild measurement
    batcher._in_flight, batcher._pass_started = 1, time.perf_counter()  # one item ahead
    with pytest.raises(QueueFull) as caught:
        batcher.admit(1)
    assert caught.value.retry_after_s <= 60
