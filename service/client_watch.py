"""Noticing that a request's client hung up, so that the work for it can be skipped.

Starlette keeps running a handler after its client has gone, and a batch of large images can
keep the decode threads busy for minutes. Once a request's body has been read, the ASGI
``receive()`` only returns again when the client disconnects (or the response is complete),
so one task waiting on it costs nothing until then. It sets a ``threading.Event``, which the
decode threads check before each item.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from starlette.requests import Request


class ClientWatch:
    """``async with ClientWatch(request) as watch:`` ... ``watch.gone.is_set()``.

    Enter it only after the body has been read: until then ``receive()`` hands out the body.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        self.gone = threading.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> ClientWatch:
        self._task = asyncio.create_task(self._watch(), name="magneto-client-watch")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        try:
            while (await self._request.receive())["type"] != "http.disconnect":
                pass  # more body than was read: not ours to judge, keep waiting
        except Exception:  # a receive that fails says nothing about the client: stop watching
            return
        self.gone.set()
