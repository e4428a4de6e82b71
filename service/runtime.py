"""The served model: loaded and warmed up at start-up, then scored through the micro-batcher.

One ``ModelRuntime`` lives on ``app.state.runtime`` (routes get it from ``service.deps``). It
turns what can go wrong while scoring (bad image, full queue, shutdown) into API errors, so
every route reports those the same way: raised for a request, or for a batch call's item
returned in that item's place, so one bad item does not fail the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from magneto.errors import ImageError, ImageTooLargeError
from magneto.predictor import (
    Prediction,
    PredictionError,
    Predictor,
    PredictRequest,
    PreparedItem,
)
from service.batching import MicroBatcher, NotRunning, QueueFull
from service.errors import ApiError
from service.observability import Metrics
from service.settings import ServiceSettings

log = logging.getLogger("magneto.service")


def checkpoint_version(path: Path) -> str:
    """The first 12 hex digits of the checkpoint's SHA-256: names exactly what is served."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


class ModelRuntime:
    """The predictor, its batcher and the metrics, from start-up to shutdown."""

    def __init__(self, settings: ServiceSettings, predictor: Predictor | None, version: str):
        self.settings = settings
        self.predictor = predictor
        self.version = version
        self.metrics = Metrics()
        self.batcher: MicroBatcher | None = None
        self.ready = False

    @property
    def model_name(self) -> str:
        assert self.predictor is not None
        return self.predictor.checkpoint.model_config.architecture

    @property
    def needs_image(self) -> bool:
        """Whether a request without an image is a 400 (true until the model says otherwise)."""
        return self.predictor is None or self.predictor.uses_images

    async def start(self) -> None:
        """Load the checkpoint (unless a predictor was given), warm up, then report ready."""
        s = self.settings
        given = self.predictor
        if given is None:
            if s.checkpoint is None:
                raise RuntimeError("no checkpoint: pass --checkpoint or set MAGNETO_CHECKPOINT")
            self.version = checkpoint_version(Path(s.checkpoint))

        def load() -> Predictor:
            if given is not None:
                return given
            return Predictor.from_checkpoint(
                s.checkpoint, device=s.device, amp=s.amp, max_pixels=s.max_pixels
            )

        self.batcher = MicroBatcher(
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
            preprocess_threads=s.preprocess_threads,
            on_batch=self.metrics.observe_batch,
        )
        self.predictor = await self.batcher.start(load)
        await self._warm_up()
        self.ready = True
        log.info("ready: %s (%s) on %s", self.model_name, self.version, self.predictor.device)

    async def _warm_up(self) -> None:
        """One forward pass before ready, so the first user does not pay for lazy set-up."""
        assert self.predictor is not None and self.batcher is not None
        image = np.full((96, 96, 3), 127, dtype=np.uint8)
        request = PredictRequest(image, [self.predictor.vocabulary.word(0)])
        item = await self.batcher.run_in_pool(self.predictor.prepare, request)
        await self.batcher.submit([item])

    async def stop(self) -> None:
        """Stop reporting ready, then finish what is queued."""
        self.ready = False
        if self.batcher is not None:
            await self.batcher.stop()

    async def predict(self, request: PredictRequest) -> Prediction:
        """One request (``/v1/summarize``): whatever is wrong with it is raised."""
        batcher, predictor = self._serving()
        prepared = await self._prepare(batcher, predictor, request, "")
        if isinstance(prepared, ApiError):
            raise prepared
        (prediction,) = await self._submit(batcher, [prepared])
        return prediction

    async def predict_items(
        self, items: Sequence[PredictRequest | ApiError]
    ) -> list[Prediction | ApiError]:
        """A batch call: an item that cannot be scored gets its error (``items[i]: ``) in its
        place instead of failing the call; the others are decoded side by side and scored."""
        batcher, predictor = self._serving()
        prepared = await asyncio.gather(
            *(
                self._prepare(batcher, predictor, item, f"items[{i}]: ")
                for i, item in enumerate(items)
            )
        )
        scored = iter(
            await self._submit(batcher, [p for p in prepared if isinstance(p, PreparedItem)])
        )
        return [next(scored) if isinstance(p, PreparedItem) else p for p in prepared]

    def _serving(self) -> tuple[MicroBatcher, Predictor]:
        if not self.ready or self.batcher is None or self.predictor is None:
            raise ApiError(503, "not_ready", "the model is still loading")
        return self.batcher, self.predictor

    @staticmethod
    async def _prepare(
        batcher: MicroBatcher, predictor: Predictor, item: PredictRequest | ApiError, where: str
    ) -> PreparedItem | ApiError:
        """Decode in the pool; a problem with the item comes back as its API error."""
        if isinstance(item, ApiError):
            return item
        try:
            return await batcher.run_in_pool(predictor.prepare, item)
        except (ImageError, PredictionError) as exc:
            return preparation_error(exc, where)

    @staticmethod
    async def _submit(batcher: MicroBatcher, items: list[PreparedItem]) -> list[Prediction]:
        try:
            return await batcher.submit(items)
        except QueueFull as exc:
            raise ApiError(
                503, "overloaded", f"too many requests waiting ({exc}); retry later"
            ) from None
        except NotRunning:
            raise ApiError(503, "shutting_down", "the service is shutting down") from None


def preparation_error(exc: ImageError | PredictionError, where: str = "") -> ApiError:
    """The API error for an item that could not be decoded or looked up; ``where`` names it."""
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, "image_too_large", f"{where}{exc}")
    if isinstance(exc, ImageError):
        return ApiError(400, "invalid_image", f"{where}{exc}")
    return ApiError(422, "invalid_request", f"{where}{exc}")
