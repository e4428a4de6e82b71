"""``GET /``: a page to try the model by hand (plain HTML + JS, no build step)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PAGE = (files("magneto.service") / "static" / "index.html").read_text(encoding="utf-8")

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)
