"""The FastAPI application: ``POST /v1/summarize`` and friends.

``create_app(settings)`` loads the checkpoint when the server starts (or takes a ready
``Predictor``), warms the model up, and only then reports ready.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from magneto.errors import ImageError, ImageTooLargeError
from magneto.predictor import Prediction, PredictionError, Predictor, PredictRequest
from service.batching import MicroBatcher, NotRunning, QueueFull
from service.errors import (
    ApiError,
    api_error_handler,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from service.observability import BodyLimit, Metrics, RequestContext
from service.page import PAGE
from service.schemas import (
    BatchJSON,
    BatchResponse,
    ErrorResponse,
    Health,
    ModelDescription,
    Options,
    SummarizeJSON,
    SummarizeMultipart,
    SummarizeResponse,
)
from service.settings import ServiceSettings

log = logging.getLogger("magneto.service")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "bad input: no image, not an image, truncated image, no tags, malformed JSON or "
        "base64",
        401: "missing or wrong X-API-Key",
        413: "body or image over the limit",
        415: "unsupported content type",
        422: "invalid option, too many tags, or a tag over the length limit",
        503: "not ready, overloaded, or shutting down",
    }.items()
}


def _json_body_schema(model) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


def _multipart_schema() -> dict[str, Any]:
    schema = _json_body_schema(SummarizeMultipart)
    schema["properties"]["image"] = {"type": "string", "format": "binary"}
    return schema


SUMMARIZE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _multipart_schema()},
            "application/json": {"schema": _json_body_schema(SummarizeJSON)},
        },
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["items"],
                    "additionalProperties": False,
                    "properties": {
                        "items": {
                            "type": "array",
                            "minItems": 1,
                            "items": _json_body_schema(SummarizeJSON),
                        }
                    },
                }
            }
        },
    }
}


def checkpoint_version(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


class Service:
    """Holds the model, the batcher and the limits; turns parsed input into predictions."""

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

    async def start(self) -> None:
        s = self.settings
        given = self.predictor
        if given is None:
            if s.checkpoint is None:
                raise RuntimeError("no checkpoint: pass --checkpoint or set MAGNETO_CHECKPOINT")
            self.version = checkpoint_version(Path(s.checkpoint))

        def load() -> Predictor:
            if given is not None:
                return given
            return Predictor.from_checkpoint(s.checkpoint, device=s.device, max_pixels=s.max_pixels)

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
        assert self.predictor is not None and self.batcher is not None
        image = np.full((96, 96, 3), 127, dtype=np.uint8)
        request = PredictRequest(image, [self.predictor.vocabulary.word(0)])
        item = await self.batcher.run_in_pool(self.predictor.prepare, request)
        await self.batcher.submit([item])

    async def stop(self) -> None:
        self.ready = False
        if self.batcher is not None:
            await self.batcher.stop()

    # -- input ---------------------------------------------------------------------------------
    def check_tags(self, raw: Any, where: str = "") -> list[str]:
        if isinstance(raw, str):
            raw = raw.split(",")
        if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
            raise ApiError(422, "invalid_tags", f"{where}tags must be a list of strings")
        tags = [t.strip() for t in raw if t.strip()]
        if not tags:
            raise ApiError(400, "missing_tags", f"{where}no tags given")
        if len(tags) > self.settings.max_tags:
            raise ApiError(
                422,
                "too_many_tags",
                f"{where}{len(tags)} tags; the limit is {self.settings.max_tags}",
            )
        long = next((t for t in tags if len(t) > self.settings.max_tag_length), None)
        if long is not None:
            raise ApiError(
                422,
                "tag_too_long",
                f"{where}a tag has {len(long)} characters; the "
                f"limit is {self.settings.max_tag_length}",
            )
        return tags

    @staticmethod
    def decode_base64(text: str, where: str = "") -> bytes:
        if text.startswith("data:") and "," in text:  # data URLs from browsers
            text = text.split(",", 1)[1]
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                400, "invalid_base64", f"{where}image_base64 is not valid base64"
            ) from None

    def parse_json_item(self, obj: Any, where: str = "") -> PredictRequest:
        if not isinstance(obj, dict):
            raise ApiError(400, "malformed_json", f"{where}expected a JSON object")
        if not obj.get("image_base64") and self._needs_image():
            raise ApiError(400, "missing_image", f"{where}no image (image_base64) given")
        if "tags" not in obj or obj["tags"] in (None, "", []):
            raise ApiError(400, "missing_tags", f"{where}no tags given")
        try:
            parsed = SummarizeJSON(**{"image_base64": "", **obj})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first.get("loc", ()))
            raise ApiError(422, "invalid_request", f"{where}{name}: {first.get('msg')}") from None
        image = self.decode_base64(parsed.image_base64, where) if parsed.image_base64 else None
        if image is not None and not image and self._needs_image():
            raise ApiError(400, "missing_image", f"{where}the image is empty")
        return PredictRequest(
            image,
            self.check_tags(parsed.tags, where),
            parsed.threshold,
            parsed.top_k,
            parsed.min_keep,
        )

    def _needs_image(self) -> bool:
        return self.predictor is None or self.predictor.uses_images

    async def parse_multipart(self, request: Request) -> PredictRequest:
        try:
            form = await request.form(max_files=1, max_fields=self.settings.max_tags + 8)
        except MultiPartException as exc:
            raise ApiError(400, "malformed_multipart", str(exc)) from None
        upload = form.get("image")
        image: bytes | None = None
        if isinstance(upload, UploadFile):
            image = await upload.read()
        elif isinstance(upload, str) and upload:
            raise ApiError(400, "missing_image", "image must be a file upload")
        if not image and self._needs_image():
            raise ApiError(400, "missing_image", "no image file given (field 'image')")
        values = [v for v in form.getlist("tags") if isinstance(v, str)]
        if len(values) == 1 and values[0].lstrip().startswith("["):
            try:
                raw: Any = json.loads(values[0])
            except json.JSONDecodeError:
                raise ApiError(400, "malformed_json", "tags is not a valid JSON array") from None
        elif len(values) == 1:
            raw = values[0].split(",")
        else:
            raw = values
        tags = self.check_tags(raw)
        options = {
            k: form.get(k)
            for k in ("threshold", "top_k", "min_keep")
            if isinstance(form.get(k), str) and form.get(k) != ""
        }
        try:
            parsed = Options(**options)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first.get("loc", ()))
            raise ApiError(422, "invalid_option", f"{name}: {first.get('msg')}") from None
        return PredictRequest(image, tags, parsed.threshold, parsed.top_k, parsed.min_keep)

    # -- scoring -------------------------------------------------------------------------------
    async def predict(self, requests: list[PredictRequest], many: bool) -> list[Prediction]:
        if not self.ready or self.batcher is None or self.predictor is None:
            raise ApiError(503, "not_ready", "the model is still loading")
        prepared = []
        for index, req in enumerate(requests):
            where = f"items[{index}]: " if many else ""
            try:
                prepared.append(await self.batcher.run_in_pool(self.predictor.prepare, req))
            except ImageTooLargeError as exc:
                raise ApiError(413, "image_too_large", f"{where}{exc}") from None
            except ImageError as exc:
                raise ApiError(400, "invalid_image", f"{where}{exc}") from None
            except PredictionError as exc:
                raise ApiError(422, "invalid_request", f"{where}{exc}") from None
        try:
            return await self.batcher.submit(prepared)
        except QueueFull as exc:
            raise ApiError(
                503, "overloaded", f"too many requests waiting ({exc}); retry later"
            ) from None
        except NotRunning:
            raise ApiError(503, "shutting_down", "the service is shutting down") from None

    def response(self, prediction: Prediction, request: Request) -> dict[str, Any]:
        started = getattr(request.state, "started", time.perf_counter())
        return {
            "kept_tags": prediction.kept_tags,
            "tags": [t.__dict__ for t in prediction.tags],
            "unknown_tags": prediction.unknown_tags,
            "threshold": prediction.threshold,
            "model": {"name": self.model_name, "version": self.version},
            "timing": {
                "total_ms": round(1000 * (time.perf_counter() - started), 3),
                "model_ms": round(1000 * prediction.seconds, 3),
            },
            "request_id": getattr(request.state, "request_id", ""),
        }


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _json_body(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None


def create_app(
    settings: ServiceSettings | None = None,
    predictor: Predictor | None = None,
    version: str = "unversioned",
) -> FastAPI:
    settings = settings or ServiceSettings()
    service = Service(settings, predictor, version)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="MAGNeto",
        version="1",
        description="Extractive Tags Summarization: send an image and its tags, get back the "
        'tags that matter. Errors are JSON objects {"error": {"code", "message"}}.',
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext, metrics=service.metrics)

    api_key = settings.api_key.get_secret_value() if settings.api_key else None

    async def require_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key")
        if not given:
            raise ApiError(401, "missing_api_key", "send the API key in the X-API-Key header")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "invalid_api_key", "the API key is not valid")

    guarded = [Depends(require_key)]

    @app.post(
        "/v1/summarize",
        response_model=SummarizeResponse,
        responses=ERRORS,
        openapi_extra=SUMMARIZE_BODY,
        dependencies=guarded,
        tags=["summarize"],
        summary="Keep the tags of one image that matter",
    )
    async def summarize(request: Request) -> dict[str, Any]:
        kind = _content_type(request)
        if kind == "multipart/form-data":
            parsed = await service.parse_multipart(request)
        elif kind == "application/json":
            parsed = service.parse_json_item(await _json_body(request))
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                "send multipart/form-data (image file + tags) or application/json "
                "(image_base64 + tags)",
            )
        (prediction,) = await service.predict([parsed], many=False)
        return service.response(prediction, request)

    @app.post(
        "/v1/summarize/batch",
        response_model=BatchResponse,
        responses=ERRORS,
        openapi_extra=BATCH_BODY,
        dependencies=guarded,
        tags=["summarize"],
        summary="Several items in one call",
    )
    async def summarize_batch(request: Request) -> dict[str, Any]:
        if _content_type(request) != "application/json":
            raise ApiError(415, "unsupported_media_type", 'send application/json {"items": [...]}')
        body = await _json_body(request)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("items"), list)
            or not body["items"]
        ):
            raise ApiError(
                400, "malformed_json", 'expected {"items": [...]} with at least one item'
            )
        unknown = set(body) - set(BatchJSON.model_fields)
        if unknown:
            raise ApiError(422, "invalid_request", f"unknown field {sorted(unknown)[0]!r}")
        if len(body["items"]) > settings.max_batch_items:
            raise ApiError(
                422,
                "too_many_items",
                f"{len(body['items'])} items; the limit is {settings.max_batch_items}",
            )
        parsed = [
            service.parse_json_item(obj, f"items[{i}]: ") for i, obj in enumerate(body["items"])
        ]
        predictions = await service.predict(parsed, many=True)
        return {
            "results": [service.response(p, request) for p in predictions],
            "request_id": request.state.request_id,
        }

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Process alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["operations"],
        responses={503: ERRORS[503]},
        summary="Model loaded and warmed up",
    )
    async def readyz() -> dict[str, str]:
        if not service.ready:
            raise ApiError(503, "not_ready", "the model is still loading")
        return {"status": "ready"}

    @app.get(
        "/v1/model",
        response_model=ModelDescription,
        tags=["operations"],
        responses={401: ERRORS[401], 503: ERRORS[503]},
        dependencies=guarded,
        summary="The served model",
    )
    async def model_info() -> dict[str, Any]:
        if service.predictor is None:
            raise ApiError(503, "not_ready", "the model is still loading")
        info = service.predictor.info
        return {
            "name": service.model_name,
            "version": service.version,
            "architecture": info["architecture"],
            "backbone": info["backbone"],
            "vocabulary_size": info["vocabulary_size"],
            "threshold": info["threshold"],
            "input_size": info["input_size"],
            "uses_images": info["uses_images"],
            "stage": info["stage"],
            "training_metrics": info["metrics"],
            "max_batch_size": settings.max_batch_size,
            "max_wait_ms": settings.max_wait_ms,
        }

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        service.metrics.queue_depth.set(service.batcher.depth if service.batcher else 0)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app
