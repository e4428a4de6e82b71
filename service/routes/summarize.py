"""``POST /v1/summarize`` (multipart or JSON) and ``POST /v1/summarize/batch`` (JSON).

Both read their bodies with ``service.bodies`` (see there why); ``openapi_extra`` declares those
bodies in the OpenAPI document from the same pydantic models. Once the body is read, a
``ClientWatch`` notices a client that hangs up, so its images are not decoded and scored for
nobody (the answer is then a 499 that no one reads).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

import magneto.service.bodies as bodies
from magneto.infer.predictor import Prediction
from magneto.service.bodies import JSON, MULTIPART
from magneto.service.client_watch import ClientWatch
from magneto.service.deps import GUARDED, Host, Settings
from magneto.service.errors import ApiError, error_responses
from magneto.service.model_host import ModelHost
from magneto.service.schemas import (
    BatchJSON,
    BatchResponse,
    SummarizeJSON,
    SummarizeMultipart,
    SummarizeResponse,
    request_body,
)

router = APIRouter(tags=["summarize"], dependencies=GUARDED, responses=error_responses())
ONE = request_body({MULTIPART: SummarizeMultipart, JSON: SummarizeJSON})
BATCH = request_body({JSON: BatchJSON})


@router.post(
    "/v1/summarize",
    response_model=SummarizeResponse,
    response_model_exclude_unset=True,  # explanations appear only when asked for
    openapi_extra=ONE,
    summary="Keep the tags of one image that matter",
    description="Send multipart/form-data (an `image` file, `tags`, options; for curl) or "
    "application/json (`image_base64`, `tags`, options; for programs). Unknown fields are a 422.",
)
async def summarize(request: Request, host: Host, settings: Settings) -> dict[str, Any]:
    kind = bodies.content_type(request)
    if kind == MULTIPART:
        item = await bodies.multipart_item(request, settings, host.needs_image)
    elif kind == JSON:
        item = bodies.json_item(await bodies.read_json(request), settings, host.needs_image)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send multipart/form-data (image file + tags) or application/json "
            "(image_base64 + tags)",
        )
    async with ClientWatch(request) as client:
        prediction = await host.predict(item, client.gone, arrived(request))
    return _result(prediction, request, host, item.explain)


@router.post(
    "/v1/summarize/batch",
    response_model=BatchResponse,
    response_model_exclude_unset=True,
    openapi_extra=BATCH,
    summary="Several items in one call",
    description='`{"items": [...]}` of JSON items as for `/v1/summarize`. A bad item fails '
    "alone: its entry in `results` is `{index, status, error}` with the code and message a "
    "single request would get, and the other items are answered. Only a bad body (not JSON, "
    "no items, too many items, an unknown field) fails the whole call, and so do images that "
    "together have more pixels than `max_batch_pixels` (413 `batch_too_large`, read from the "
    "image headers before anything is decoded).",
)
async def summarize_batch(request: Request, host: Host, settings: Settings) -> dict[str, Any]:
    items = await bodies.batch_items(request, settings, host.needs_image)
    async with ClientWatch(request) as client:
        outcomes = await host.predict_items(items, client.gone, arrived(request))
    return {
        "results": [
            _item_error(i, o)
            if isinstance(o, ApiError)
            else _result(o, request, host, getattr(items[i], "explain", False))
            for i, o in enumerate(outcomes)
        ],
        "request_id": request.state.request_id,
    }


def _item_error(index: int, error: ApiError) -> dict[str, Any]:
    """A failed batch item's entry: the error a single request would get, and where it was."""
    return {
        "index": index,
        "status": error.status,
        "error": {"code": error.code, "message": error.message},
    }


def _result(
    prediction: Prediction, request: Request, host: ModelHost, explain: bool
) -> dict[str, Any]:
    """One item's answer; ``total_ms`` counts from the moment the request arrived."""
    started = getattr(request.state, "started", time.perf_counter())
    return {
        **prediction.as_dict(explain=explain),
        "model": {"name": host.model_name, "version": host.version},
        "timing": {
            "total_ms": round(1000 * (time.perf_counter() - started), 3),
            "model_ms": round(1000 * prediction.seconds, 3),
        },
        "request_id": getattr(request.state, "request_id", ""),
    }


def arrived(request: Request) -> float | None:
    """When the request reached the service (set by the admission middleware)."""
    return getattr(request.state, "arrived", None)
