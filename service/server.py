"""Run the service with uvicorn; SIGTERM/SIGINT finish in-flight requests before exiting.

The port is bound before anything else happens: a port already in use is one clear line and
exit status 1 at once, not a model that loads, says ready, then dies with Errno 98. The bound
socket is handed to uvicorn, so nothing can take the port in between. Connections are served
by ``service.slow_clients.GuardedProtocol`` (header/body time and connection bounds).
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from magneto.errors import MagnetoError
from magneto.service.app import create_app
from magneto.service.settings import ServiceSettings
from magneto.service.slow_clients import GuardedProtocol


class PortUnavailable(MagnetoError):
    """The address to listen on cannot be bound (in use, not ours, privileged)."""


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("magneto.access", "magneto.service"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds one), or ``PortUnavailable``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"port {port} on {host} is already in use: stop what listens there or "
                "choose another --port"
            ) from None
        reason = exc.strerror or str(exc)
        raise PortUnavailable(f"cannot listen on {host} port {port}: {reason}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server on a socket bound beforehand, still saying where it listens."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            logging.getLogger("uvicorn.error").info(
                "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", host, port
            )


def build_server(settings: ServiceSettings, app: Any) -> uvicorn.Server:
    """uvicorn's server for ``app``, on the guarded protocol; run it with ``sockets=[...]``."""
    metrics = getattr(getattr(app.state, "host", None), "metrics", None)
    protocol = functools.partial(
        GuardedProtocol,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=settings.max_connections,
        on_reject=metrics.observe_rejection if metrics is not None else None,
    )
    config = uvicorn.Config(
        app,
        http=protocol,  # type: ignore[arg-type]
        ws="none",
        log_level=settings.log_level,
        access_log=False,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=int(settings.graceful_timeout),
    )
    return _Server(config)


def serve(
    checkpoint: str | Path | None = None,
    listen_socket: socket.socket | None = None,
    **overrides: Any,
) -> None:
    """Serve a checkpoint (settings: ``overrides``, then ``MAGNETO_*`` variables) on
    ``listen_socket`` if given (see ``bind_socket``), else on the host and port settings."""
    if checkpoint is not None:
        overrides["checkpoint"] = checkpoint
    settings = ServiceSettings(**overrides)
    if settings.checkpoint is None:
        raise ValueError("no checkpoint: pass --checkpoint or set MAGNETO_CHECKPOINT")
    if not Path(settings.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {settings.checkpoint}")
    sock = listen_socket or bind_socket(settings.host, settings.port)  # before the model loads
    with sock:
        configure_logging(settings.log_level)
        server = build_server(settings, create_app(settings))
        server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(1)
