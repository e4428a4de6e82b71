"""JSON errors: every failure is ``{"error": {"code", "message"}}`` with the right status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from magneto.service.schemas import ErrorResponse

_DOCUMENTED = {
    400: "bad input: no image, not an image, truncated image, no tags, malformed JSON or base64",
    401: "missing or wrong X-API-Key",
    413: "body or image over the limit",
    415: "unsupported content type",
    422: "invalid option, too many tags, a tag over the length limit or not valid Unicode text",
    503: "not ready, overloaded, or shutting down",
}


class ApiError(Exception):
    """Raised anywhere while serving a request; answered as a JSON error."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers  # e.g. Retry-After on a 503


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (every one when none is named)."""
    return {
        status: {"model": ErrorResponse, "description": _DOCUMENTED[status]}
        for status in statuses or _DOCUMENTED
    }


def describe(error: Mapping[str, Any]) -> str:
    """``field: what is wrong``, for one of pydantic's errors."""
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
    return f"{where}: {error.get('msg')}"


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON error; a message quoting what the client sent cannot break it (a lone surrogate
    is written as its escape, ``\\ud800``, instead of failing to encode as UTF-8)."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "ApiKey"} if exc.status == 401 else {}
    return error_response(exc.status, exc.code, exc.message, {**headers, **(exc.headers or {})})


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allowed = allowed_methods(request) or _allow_of(exc)
        message = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
        return error_response(405, "method_not_allowed", message, {"Allow": ", ".join(allowed)})
    codes = {404: "not_found"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), exc.headers
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path answers (Starlette's own ``Allow`` names only the
    first route that matched the path, not those of other routes on the same path)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= set(route_methods)
    return sorted(methods)


def _allow_of(exc: StarletteHTTPException) -> list[str]:
    allow = (exc.headers or {}).get("Allow", "")
    return [m.strip() for m in allow.split(",") if m.strip()]


async def validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", describe(exc.errors()[0]))


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    rid = getattr(request.state, "request_id", "-")
    return error_response(500, "internal_error", f"unexpected error (request {rid})")


def install_error_handlers(app: FastAPI) -> None:
    """Route every kind of failure, the unexpected ones too, to a JSON error."""
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
