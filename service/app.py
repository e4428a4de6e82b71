"""The FastAPI application: ``create_app`` wires the pieces together.

The routes live in ``service.routes`` (one module per concern), what they need in
``service.deps``, the model's lifecycle in ``service.model_host``. The checkpoint is loaded (or a
ready ``Predictor`` taken) when the server starts, and the model is warmed up before
``/readyz`` says ready.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from magneto.infer.predictor import Predictor
from magneto.service.admission import Admission
from magneto.service.errors import install_error_handlers
from magneto.service.model_host import ModelHost
from magneto.service.observability import BodyLimit, RequestContext
from magneto.service.routes import ROUTERS
from magneto.service.schemas import with_limits
from magneto.service.settings import ServiceSettings
from magneto.service.slow_clients import BodyTimeout

DESCRIPTION = (
    "Extractive Tags Summarization: send an image and its tags, get back the tags that matter. "
    'Errors are JSON objects {"error": {"code", "message"}}.'
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Serve only a loaded, warm model; on shutdown, finish what is queued."""
    host: ModelHost = app.state.host
    await host.start()
    try:
        yield
    finally:
        await host.stop()


def create_app(
    settings: ServiceSettings | None = None,
    predictor: Predictor | None = None,
    version: str = "unversioned",
) -> FastAPI:
    """The app for ``settings`` (default: ``MAGNETO_*`` variables), serving ``predictor`` if
    given, else the checkpoint the settings name."""
    settings = settings or ServiceSettings()
    host = ModelHost(settings, predictor, version)
    # docs_url/redoc_url None: service.routes.docs serves them with local assets (no CDN).
    app = FastAPI(
        title="MAGNeto",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.host = host
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        BodyTimeout,
        seconds=settings.body_timeout_s,
        on_timeout=lambda: host.metrics.observe_rejection("body_timeout"),
    )
    app.add_middleware(Admission, host=host)
    app.add_middleware(RequestContext, metrics=host.metrics)
    for router in ROUTERS:
        app.include_router(router)
    _document_limits(app, settings)
    return app


def _document_limits(app: FastAPI, settings: ServiceSettings) -> None:
    """Write the served limits into ``/openapi.json``, built once, on first use: what they allow
    is what the document calls valid."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_limits(build(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
