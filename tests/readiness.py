"""One helper for every test that starts a server: wait until its ``/readyz`` answers 200."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def wait_until_ready(
    url: str,
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.2,
) -> bool:
    """Poll ``url + "/readyz"``: True once it answers 200; False when ``alive()`` turns False
    (the server process or thread died) or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return False
