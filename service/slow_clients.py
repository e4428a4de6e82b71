"""Bounds on what slow or idle clients can hold: header time, body time, open connections.

uvicorn bounds neither how long a client may take to send its request headers nor its body
(300 connections that sent half a request line were held open indefinitely), and its own
``limit_concurrency`` answers in plain text. So:

- ``GuardedProtocol``, uvicorn's httptools protocol (the one it picks by default) with a timer:
  a connection whose request line and headers are not complete ``header_timeout_s`` after it
  opened (or after the first byte of a request on a kept-alive connection) is closed; so is
  one whose body is still incomplete a second after ``body_timeout_s``, the backstop for bodies
  the app never reads. Every request on a connection opened beyond ``max_connections`` is
  answered with a JSON 503 and the connection closed.
- ``BodyTimeout``, ASGI middleware: a 408 (JSON, ``Connection: close``) when the app waits for
  a body that has not fully arrived ``body_timeout_s`` after the headers did.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from magneto.service.errors import ApiError

log = logging.getLogger("magneto.service")
BODY_GRACE_S = 1.0  # the protocol's backstop waits this much longer than BodyTimeout


def _json_error(status: int, code: str, message: str, *extra: tuple[bytes, bytes]) -> list[dict]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


def too_many_connections(max_connections: int) -> Callable[..., Any]:
    """The ASGI app that answers requests on a connection over the cap."""
    messages = _json_error(
        503,
        "too_many_connections",
        f"the server already holds {max_connections} connections; retry later",
        (b"retry-after", b"1"),
    )

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        for message in messages:
            await send(message)

    return app


class GuardedProtocol(HttpToolsProtocol):
    """One timer per connection: headers, then body, must arrive in time."""

    def __init__(
        self,
        *args: Any,
        header_timeout_s: float,
        body_timeout_s: float,
        max_connections: int,
        on_reject: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.on_reject = on_reject
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.app = too_many_connections(self.max_connections)
            self._count("connections")
        self._arm(self.header_timeout_s, "header_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # a new request on a kept-alive connection
            self._arm(self.header_timeout_s, "header_timeout")

    def on_headers_complete(self) -> None:
        self._disarm()
        self._arm(self.body_timeout_s + BODY_GRACE_S, "body_timeout")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, reason: str) -> None:
        self._timer = self.loop.call_later(seconds, self._expire, reason)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, reason: str) -> None:
        self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.debug("closing a connection from %s: %s", self.client, reason)
            self._count(reason)
            self.transport.close()

    def _count(self, reason: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)


class BodyTimeout:
    """408 when the app waits for a body that is not complete ``seconds`` after the headers."""

    def __init__(
        self, app: Any, seconds: float, on_timeout: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.seconds = seconds
        self.on_timeout = on_timeout

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed_receive() -> dict:
            nonlocal complete
            if complete:  # only http.disconnect is left to wait for: no bound on that
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                if self.on_timeout is not None:
                    self.on_timeout()
                raise ApiError(
                    408,
                    "request_timeout",
                    f"the request body did not arrive within {self.seconds:g} s",
                    {"Connection": "close"},
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return await self.app(scope, timed_receive, send)
