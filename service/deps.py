"""FastAPI dependencies: the settings, the model host and the API-key check.

``create_app`` puts the settings and the host on ``app.state``; routes ask for them here,
so nothing is a closure over ``create_app`` and a test app can carry its own.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from magneto.service.errors import ApiError
from magneto.service.model_host import ModelHost
from magneto.service.settings import ServiceSettings


# async, though they do not wait: FastAPI runs plain functions in a thread pool, a hop per call.
async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


async def get_host(request: Request) -> ModelHost:
    return request.app.state.host


Settings = Annotated[ServiceSettings, Depends(get_settings)]
Host = Annotated[ModelHost, Depends(get_host)]

# auto_error=False: a missing key is answered below, as a JSON error like every other one.
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="needed when the service runs with an API key (MAGNETO_API_KEY)",
)


async def require_api_key(
    settings: Settings, given: Annotated[str | None, Security(api_key_header)]
) -> None:
    """401 unless the service has no key or ``X-API-Key`` is that key."""
    if settings.api_key is None:
        return
    if not given:
        raise ApiError(401, "missing_api_key", "send the API key in the X-API-Key header")
    expected = settings.api_key.get_secret_value()
    # Header values arrive as latin-1 text: .encode("latin-1") gives back the bytes sent, so a
    # key with non-ASCII characters sent as UTF-8 matches; compared in constant time.
    if not hmac.compare_digest(given.encode("latin-1"), expected.encode("utf-8")):
        raise ApiError(401, "invalid_api_key", "the API key is not valid")


async def require_api_key_for_metrics(
    settings: Settings, given: Annotated[str | None, Security(api_key_header)]
) -> None:
    """Like ``require_api_key`` when ``metrics_require_key`` is on: the counters tell who uses
    the service and how much, which an operator may not want open to anyone on the network."""
    if settings.metrics_require_key:
        await require_api_key(settings, given)


GUARDED = [Depends(require_api_key)]
METRICS_GUARD = [Depends(require_api_key_for_metrics)]
