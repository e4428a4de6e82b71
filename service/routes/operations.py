"""Probes and metadata for operators: ``/healthz``, ``/readyz``, ``/v1/model``, ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import GUARDED, Runtime, Settings
from service.errors import ApiError, error_responses
from service.schemas import Health, ModelDescription

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
async def readyz(runtime: Runtime) -> dict[str, str]:
    if not runtime.ready:
        raise ApiError(503, "not_ready", "the model is still loading")
    return {"status": "ready"}


@router.get(
    "/v1/model",
    response_model=ModelDescription,
    responses=error_responses(401, 503),
    dependencies=GUARDED,
    summary="The served model",
)
async def model_info(runtime: Runtime, settings: Settings) -> dict[str, Any]:
    if runtime.predictor is None:
        raise ApiError(503, "not_ready", "the model is still loading")
    info = runtime.predictor.info
    return {
        "name": runtime.model_name,
        "version": runtime.version,
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


@router.get("/metrics", include_in_schema=False)
async def metrics(runtime: Runtime) -> Response:
    """Prometheus text format; the queue depth is read now, the rest is counted as it happens."""
    runtime.metrics.queue_depth.set(runtime.batcher.depth if runtime.batcher else 0)
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
