"""/docs and /redoc work air-gapped: every file they load comes from the service itself."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright

from magneto.service.app import create_app
from magneto.service.routes.docs import CSP
from magneto.service.settings import ServiceSettings
from tests.service.test_page import ARGS, CHROMIUM

LOCAL = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def client():
    # No lifespan (no `with`): the documentation needs no model.
    return TestClient(create_app(ServiceSettings()))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_doc_pages_name_only_local_files(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.text
    assert "/docs/assets/" in html and "/openapi.json" in html
    assert "http://" not in html and "https://" not in html, html
    # And whatever the bundles would fetch on their own stays on this host.
    assert response.headers["content-security-policy"] == CSP
    assert "default-src 'self'" in CSP and "img-src 'self' data:;" in CSP


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "javascript"),
        ("favicon.png", "image/png"),
    ],
)
def test_assets_are_served(client, name, media_type):
    response = client.get(f"/docs/assets/{name}")
    assert response.status_code == 200
    assert media_type in response.headers["content-type"]
    assert len(response.content) > 1000


@pytest.mark.parametrize("name", ["core.py", "..%2F__init__.py", "swagger-ui.js"])
def test_nothing_else_is_served_from_the_assets_folder(client, name):
    response = client.get(f"/docs/assets/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def _offline_page(browser):
    """A page whose requests to anywhere but this host are aborted; returns what it asked."""
    context = browser.new_context()
    requested: list[str] = []
    blocked: list[str] = []

    def route(r) -> None:
        url = r.request.url
        requested.append(url)
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and (
            urlsplit(url).hostname not in LOCAL
        ):
            blocked.append(url)
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    return context, context.new_page(), requested, blocked


@pytest.mark.slow
def test_swagger_ui_renders_without_internet(browser, server):
    context, page, requested, blocked = _offline_page(browser)
    try:
        page.goto(server + "/docs")
        page.get_by_text("/v1/summarize", exact=True).first.wait_for(timeout=30_000)
        assert page.get_by_text("/v1/model/vocabulary", exact=True).first.is_visible()
        assert page.locator(".swagger-ui .btn.authorize").is_visible()  # the X-API-Key scheme
    finally:
        context.close()
    assert blocked == []
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in requested)
    assert any(url.endswith("/openapi.json") for url in requested)


@pytest.mark.slow
def test_redoc_renders_without_internet(browser, server):
    context, page, requested, blocked = _offline_page(browser)
    try:
        page.goto(server + "/redoc")
        # The operation's heading in the middle panel (the menu entry is folded away).
        heading = page.locator("h2", has_text="The tags the model knows, a page at a time")
        heading.first.wait_for(timeout=30_000)
    finally:
        context.close()
    assert blocked == []
    assert any(url.endswith("/docs/assets/redoc.standalone.js") for url in requested)
