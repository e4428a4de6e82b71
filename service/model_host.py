"""The served model: loaded and warmed up at start-up, then scored through the micro-batcher.

One ``ModelHost`` lives on ``app.state.host`` (routes get it from ``service.deps``). It
turns what can go wrong while scoring (bad image, full queue, shutdown) into API errors, so
every route reports those the same way: raised for a request, or for a batch call's item
returned in that item's place, so one bad item does not fail the others.

It also keeps a request's cost bounded: a batch call whose images add up to more than
``max_batch_pixels`` (from their headers) is refused before anything is decoded, and once a
request's client has hung up (``gone``, see ``service.client_watch``) its items are neither
decoded nor scored; ``magneto_abandoned_items_total`` counts those.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from prometheus_client import Counter

from magneto.errors import ImageAspectError, ImageError, ImageTooLargeError
from magneto.infer.predictor import (
    Prediction,
    PredictionError,
    Predictor,
    PredictRequest,
    PreparedItem,
)
from magneto.infer.requests import header_pixels
from magneto.service.batching import ClientGone, MicroBatcher, NotRunning, QueueFull
from magneto.service.errors import ApiError
from magneto.service.observability import Metrics
from magneto.service.settings import ServiceSettings

log = logging.getLogger("magneto.service")


def checkpoint_version(path: Path) -> str:
    """The first 12 hex digits of the checkpoint's SHA-256: names exactly what is served."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


class ModelHost:
    """The predictor, its batcher and the metrics, from start-up to shutdown."""

    def __init__(self, settings: ServiceSettings, predictor: Predictor | None, version: str):
        self.settings = settings
        self.predictor = predictor
        self.version = version
        self.metrics = Metrics()
        self.abandoned = Counter(
            "magneto_abandoned_items",
            "items not decoded (stage=decode) or not scored (stage=model) because their "
            "client had disconnected",
            ["stage"],
            registry=self.metrics.registry,
        )
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
            assert s.checkpoint is not None  # checked above
            return Predictor.from_checkpoint(
                s.checkpoint,
                device=s.device,
                runtime=s.runtime,
                calibration=s.calibration_images_set(),
                batch_size=s.max_batch_size,  # what auto measures: the batcher's full batch
                max_pixels=s.max_pixels,
            )

        self.batcher = MicroBatcher(
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
            max_queue_wait_s=s.max_queue_wait_s,
            preprocess_threads=s.preprocess_threads,
            on_batch=self.metrics.observe_batch,
            on_reject=self.metrics.observe_rejection,
            on_abandon=self.abandoned.labels("model").inc,  # unscored items only
        )
        self.predictor = await self.batcher.start(load)
        self.metrics.observe_runtime(self.predictor.info["runtime"])
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

    async def predict(
        self,
        request: PredictRequest,
        gone: threading.Event | None = None,
        arrived: float | None = None,
    ) -> Prediction:
        """One request (``/v1/summarize``): whatever is wrong with it is raised. ``arrived``:
        when the request reached the service (its wait for the model counts from there)."""
        since = time.perf_counter() if arrived is None else arrived
        batcher, predictor = self._serving()
        prepared = await self._prepare(batcher, predictor, request, "", gone)
        if isinstance(prepared, ApiError):
            raise prepared
        self._unless_gone([] if prepared is None else [prepared], gone)  # None: not decoded
        assert prepared is not None
        (prediction,) = await self._submit(batcher, [prepared], gone, since)
        return prediction

    async def predict_items(
        self,
        items: Sequence[PredictRequest | ApiError],
        gone: threading.Event | None = None,
        arrived: float | None = None,
    ) -> list[Prediction | ApiError]:
        """A batch call: an item that cannot be scored gets its error (``items[i]: ``) in its
        place instead of failing the call; the others are decoded side by side and scored.

        Raised for the whole call: 413 when the images are larger together than
        ``max_batch_pixels``, 499 when the client hung up before the work was done."""
        since = time.perf_counter() if arrived is None else arrived
        batcher, predictor = self._serving()
        self._check_batch_pixels(items)
        prepared = await asyncio.gather(
            *(
                self._prepare(batcher, predictor, item, f"items[{i}]: ", gone)
                for i, item in enumerate(items)
            )
        )
        runnable = [p for p in prepared if isinstance(p, PreparedItem)]
        self._unless_gone(runnable, gone)
        scored = iter(await self._submit(batcher, runnable, gone, since))
        return [
            next(scored) if isinstance(p, PreparedItem) else self._answered(p) for p in prepared
        ]

    @staticmethod
    def _answered(outcome: ApiError | None) -> ApiError:
        """An item's own error; None (its decode skipped for a client that hung up) never gets
        here, since ``_unless_gone`` has answered 499 by then."""
        if outcome is None:
            raise ApiError(499, "client_closed_request", "the client closed the connection")
        return outcome

    def _check_batch_pixels(self, items: Sequence[PredictRequest | ApiError]) -> None:
        """413 before any decode when the images add up to more than ``max_batch_pixels``.

        Sizes come from the headers; an image over ``max_pixels`` is left out of the sum,
        since it fails alone without being decoded.
        """
        limit, per_image = self.settings.max_batch_pixels, self.settings.max_pixels
        sizes = (header_pixels(i.image) for i in items if isinstance(i, PredictRequest))
        total = sum(n for n in sizes if n <= per_image)
        if total > limit:
            raise ApiError(
                413,
                "batch_too_large",
                f"the images have {total} pixels together; the limit for one batch call is "
                f"{limit}: send fewer or smaller images per call",
            )

    def _unless_gone(self, runnable: list[PreparedItem], gone: threading.Event | None) -> None:
        """499 instead of scoring when the client has hung up (the items count as abandoned)."""
        if gone is None or not gone.is_set():
            return
        self.abandoned.labels("model").inc(len(runnable))
        raise ApiError(499, "client_closed_request", "the client closed the connection")

    def _serving(self) -> tuple[MicroBatcher, Predictor]:
        if not self.ready or self.batcher is None or self.predictor is None:
            raise ApiError(503, "not_ready", "the model is still loading")
        return self.batcher, self.predictor

    async def _prepare(
        self,
        batcher: MicroBatcher,
        predictor: Predictor,
        item: PredictRequest | ApiError,
        where: str,
        gone: threading.Event | None,
    ) -> PreparedItem | ApiError | None:
        """Decode in the pool; a problem with the item comes back as its API error, an item
        whose client hung up before its turn as None (not decoded, counted)."""
        if isinstance(item, ApiError):
            return item
        try:
            return await batcher.run_in_pool(_prepare_unless_gone, predictor, item, gone)
        except (ImageError, PredictionError) as exc:
            return preparation_error(exc, where)
        except ClientGone:
            self.abandoned.labels("decode").inc()
            return None
        except Exception as exc:  # an input the pipeline chokes on: the client's 4xx, never 500
            message = f"{where}the image could not be prepared ({type(exc).__name__})"
            return ApiError(400, "invalid_image", message)

    async def _submit(
        self,
        batcher: MicroBatcher,
        items: list[PreparedItem],
        gone: threading.Event | None,
        since: float,
    ) -> list[Prediction]:
        try:
            return await batcher.submit(items, gone, since)
        except ClientGone:  # the batcher counted the items it left out (on_abandon)
            raise ApiError(499, "client_closed_request", "the client has gone") from None
        except QueueFull as exc:
            raise ApiError(
                503,
                "overloaded",
                f"too many requests waiting ({exc}); retry in {exc.retry_after_s} s",
                {"Retry-After": str(exc.retry_after_s)},
            ) from None
        except NotRunning:
            raise ApiError(503, "shutting_down", "the service is shutting down") from None


def _prepare_unless_gone(
    predictor: Predictor, item: PredictRequest, gone: threading.Event | None
) -> PreparedItem:
    """Runs in a decode thread: checked when the item's turn comes, not when it was queued."""
    if gone is not None and gone.is_set():
        raise ClientGone
    return predictor.prepare(item)


def preparation_error(exc: ImageError | PredictionError, where: str = "") -> ApiError:
    """The API error for an item that could not be decoded or looked up; ``where`` names it."""
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, "image_too_large", f"{where}{exc}")
    if isinstance(exc, ImageAspectError):
        return ApiError(422, "image_aspect_ratio", f"{where}{exc}")
    if isinstance(exc, ImageError):
        return ApiError(400, "invalid_image", f"{where}{exc}")
    return ApiError(422, "invalid_request", f"{where}{exc}")
