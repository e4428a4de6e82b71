"""Request ids, one structured access-log line per request, Prometheus metrics, body limit.

All pure ASGI middleware: no per-request task switching, so they add microseconds, not
milliseconds, to a request.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from magneto.service.errors import ApiError

access_log = logging.getLogger("magneto.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ROUTES = {
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/model",
    "/v1/summarize",
    "/v1/summarize/batch",
    "/docs",
    "/openapi.json",
}


class Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "magneto_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "magneto_request_duration_seconds",
            "HTTP request duration",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "magneto_batch_size",
            "items per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "magneto_model_seconds",
            "duration of a forward pass",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "magneto_queue_depth", "items waiting for the model", registry=self.registry
        )
        self.rejected = Counter(
            "magneto_rejected",
            "requests and connections turned away: queue_full, queue_wait (expected wait over "
            "the bound), connections (over max_connections), header_timeout, body_timeout",
            ["reason"],
            registry=self.registry,
        )

        self.runtime = Gauge(
            "magneto_runtime_info",
            "1 for the runtime running the image trunk (requested: auto or forced; source: "
            "measured, cached, forced or only)",
            ["runtime", "requested", "source"],
            registry=self.registry,
        )
        self.runtime_ms = Gauge(
            "magneto_runtime_batch_ms",
            "median ms per batch of max_batch_size items that --runtime auto measured, per "
            "candidate runtime",
            ["runtime"],
            registry=self.registry,
        )

    def observe_runtime(self, choice: dict[str, Any]) -> None:
        """The runtime the predictor runs, from its ``info["runtime"]``."""
        self.runtime.labels(choice["name"], choice["requested"], choice["source"]).set(1)
        for name, ms in choice["timings_ms"].items():
            self.runtime_ms.labels(name).set(ms)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_seconds.observe(seconds)

    def observe_rejection(self, reason: str) -> None:
        self.rejected.labels(reason).inc()


class RequestContext:
    """Gives every request an id (X-Request-ID in and out), times it, logs it, counts it."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = started
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            path = scope.get("path", "")
            route = path if path in ROUTES else "other"
            self.metrics.requests.labels(scope.get("method", ""), route, str(status)).inc()
            self.metrics.duration.labels(route).observe(seconds)
            access_log.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "method": scope.get("method"),
                        "path": path,
                        "status": status,
                        "ms": round(1000 * seconds, 2),
                        "client": (scope.get("client") or ["-"])[0],
                    }
                )
            )


class BodyLimit:
    """413 for bodies over the limit: at once from Content-Length, or while reading."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps(
                {
                    "error": {
                        "code": "payload_too_large",
                        "message": f"the body has {int(declared)} bytes; the limit is "
                        f"{self.max_bytes}",
                    }
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return None
        received = 0
        limit = self.max_bytes

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(
                        413,
                        "payload_too_large",
                        f"the body is larger than the limit of {limit} bytes",
                    )
            return message

        return await self.app(scope, counting_receive, send)
