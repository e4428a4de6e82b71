"""Probes and metadata: ``/healthz``, ``/readyz``, ``/v1/model`` (and its vocabulary),
``/metrics``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from magneto.service.deps import GUARDED, METRICS_GUARD, Host, Settings
from magneto.service.errors import ApiError, error_responses
from magneto.service.schemas import Health, ModelDescription, VocabularyPage
from magneto.service.vocabulary_listing import VocabularyListing

MAX_VOCABULARY_PAGE = 1000

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Process alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Health,
    responses=error_responses(503),
    summary="Model loaded and warmed up",
)
async def readyz(host: Host) -> dict[str, str]:
    if not host.ready:
        raise ApiError(503, "not_ready", "the model is still loading")
    return {"status": "ready"}


@router.get(
    "/v1/model",
    response_model=ModelDescription,
    responses=error_responses(401, 503),
    dependencies=GUARDED,
    summary="The served model",
)
async def model_info(host: Host, settings: Settings) -> dict[str, Any]:
    if host.predictor is None:
        raise ApiError(503, "not_ready", "the model is still loading")
    info = host.predictor.info
    return {
        "name": host.model_name,
        "version": host.version,
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
        "runtime": info["runtime"],
    }


@router.get(
    "/v1/model/vocabulary",
    response_model=VocabularyPage,
    responses=error_responses(401, 422, 503),
    dependencies=GUARDED,
    summary="The tags the model knows, a page at a time",
    description="Tags outside this vocabulary are answered as unknown (never judged). "
    "Sorted case-insensitively; `prefix` matches the way the model compares tags.",
)
async def vocabulary(
    request: Request,
    host: Host,
    offset: Annotated[int, Query(ge=0, description="skip this many matching tags")] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_VOCABULARY_PAGE, description="the most tags to return")
    ] = 100,
    prefix: Annotated[
        str, Query(max_length=200, description="only tags starting with this (any case)")
    ] = "",
) -> dict[str, Any]:
    total, tags = _listing(request, host).page(prefix, offset, limit)
    return {"total": total, "offset": offset, "limit": limit, "tags": tags}


def _listing(request: Request, host: Host) -> VocabularyListing:
    """The served model's sorted vocabulary, built on first use and kept on ``app.state``."""
    predictor = host.predictor
    if predictor is None:
        raise ApiError(503, "not_ready", "the model is still loading")
    cached = getattr(request.app.state, "vocabulary_listing", None)
    if cached is None or cached[0] is not predictor:
        cached = (predictor, VocabularyListing(predictor.vocabulary.words))
        request.app.state.vocabulary_listing = cached
    return cached[1]


@router.get("/metrics", include_in_schema=False, dependencies=METRICS_GUARD)
async def metrics(host: Host) -> Response:
    """Prometheus text format; the queue depth is read now, the rest is counted as it happens."""
    host.metrics.queue_depth.set(host.batcher.depth if host.batcher else 0)
    return Response(generate_latest(host.metrics.registry), media_type=CONTENT_TYPE_LATEST)
