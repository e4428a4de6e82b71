"""The micro-batcher keeps every PyTorch call on one thread and isolates failing items."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.batching import MicroBatcher


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
