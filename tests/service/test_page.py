"""The page at / in headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from magneto.annotations import read_annotations
from tests.service.conftest import API_KEY

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def test_upload_an_image_and_see_kept_and_dropped_tags(browser, server, tiny_data, tmp_path):
    data, images = tiny_data
    record = read_annotations(data / "train.csv")[6]
    page = browser.new_page()
    page.goto(server + "/")
    assert page.title().startswith("MAGNeto")
    page.fill("#api-key", API_KEY)
    page.set_input_files("#image", str(images / record.image_path))
    page.fill("#tags", ", ".join([*record.tags, "Unicorn"]))
    page.fill("#threshold", "0.5")
    page.click("#submit")
    page.wait_for_selector("#results:not([hidden])", timeout=30_000)
    rows = page.locator("#results tbody tr")
    assert rows.count() == len(record.tags) + 1
    assert (
        page.locator("#results tbody tr")
        .nth(len(record.tags))
        .inner_text()
        .startswith("Unicorn\tunknown tag")
    )
    kept_rows = page.locator("#results tbody tr.kept td.tag").all_inner_texts()
    kept_line = page.inner_text("#kept")
    assert kept_line.startswith("Kept: ")
    assert kept_line == "Kept: " + (", ".join(kept_rows) or "(none)")
    assert page.inner_text("#error") == ""
    page.screenshot(path=str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 1000


def test_errors_are_shown_on_the_page(browser, server):
    page = browser.new_page()
    page.goto(server + "/")
    page.fill("#api-key", API_KEY)
    page.fill("#tags", "sky")
    page.click("#submit")
    page.wait_for_function("document.querySelector('#error').textContent.length > 0")
    assert "no image" in page.inner_text("#error")
    page.fill("#api-key", "wrong")
    page.click("#submit")
    page.wait_for_function("document.querySelector('#error').textContent.includes('API key')")
