"""Run the service with uvicorn; SIGTERM/SIGINT finish in-flight requests before exiting."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import uvicorn

from service.app import create_app
from service.settings import ServiceSettings


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("magneto.access", "magneto.service"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def serve(checkpoint: str | Path | None = None, **overrides: Any) -> None:
    """Serve a checkpoint (settings: ``overrides``, then ``MAGNETO_*`` variables)."""
    if checkpoint is not None:
        overrides["checkpoint"] = checkpoint
    settings = ServiceSettings(**overrides)
    if settings.checkpoint is None:
        raise ValueError("no checkpoint: pass --checkpoint or set MAGNETO_CHECKPOINT")
    if not Path(settings.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {settings.checkpoint}")
    configure_logging(settings.log_level)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout),
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise SystemExit(1)
