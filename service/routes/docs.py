"""``/docs`` (Swagger UI) and ``/redoc``, with their scripts and styles served from here.

FastAPI's own pages load them from a CDN, so on an air-gapped host they are blank. The files
come from the ``fastapi-offline`` package (a pinned Swagger UI 5 and ReDoc 2 build; we use
only its static files), served under ``/docs/assets/`` from a fixed list of names. Both pages
also carry a same-origin Content-Security-Policy: ReDoc's bundle fetches its logo from the
vendor's CDN unconditionally, and the browser must not reach out even for that.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from magneto.service.errors import ApiError

ASSET_DIR = Path(str(files("fastapi_offline") / "static"))
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
PREFIX = "/docs/assets"
# Inline: the pages' start-up script and the bundles' styles; blob: ReDoc's search worker.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    app = request.app
    page = get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}{PREFIX}/favicon.png",
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    page.headers["Content-Security-Policy"] = CSP
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    app = request.app
    page = get_redoc_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{PREFIX}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{PREFIX}/favicon.png",
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = CSP
    return page


@router.get(PREFIX + "/{name}")
async def asset(name: str) -> FileResponse:
    """One of ``ASSETS`` (nothing else under the package's folder is reachable)."""
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"no such documentation asset: {name}")
    return FileResponse(ASSET_DIR / name, headers={"Cache-Control": "public, max-age=86400"})
