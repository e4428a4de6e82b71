"""The page at / in headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from magneto.data.annotation_files import read_annotations
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


@pytest.mark.slow
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


def _summarize(page, images, record, *, tags, threshold="", top_k=""):
    page.fill("#api-key", API_KEY)
    page.set_input_files("#image", str(images / record.image_path))
    page.fill("#tags", ", ".join(tags))
    page.fill("#threshold", threshold)
    page.fill("#top-k", top_k)
    page.click("#submit")
    page.wait_for_selector("#results:not([hidden])", timeout=30_000)


def _style(page, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"e => getComputedStyle(e).{prop}")


def test_unknown_tags_are_shown_apart_from_dropped_ones(browser, server, tiny_data):
    data, images = tiny_data
    record = next(r for r in read_annotations(data / "train.csv") if len(r.tags) >= 2)
    page = browser.new_page()
    page.goto(server + "/")
    # top k 1 with two or more known tags: at least one is dropped.
    _summarize(page, images, record, tags=[*record.tags, "Unicorn"], top_k="1")
    assert page.locator("#results tbody tr.kept").count() <= 1
    assert page.locator("#results tbody tr.dropped").count() >= 1
    unknown = page.locator("#results tbody tr.unknown")
    assert unknown.count() == 1
    assert unknown.locator("td.tag").inner_text() == "Unicorn"
    assert unknown.locator("td.kept").inner_text() == "not judged"
    assert unknown.get_attribute("title") == "not in the model's vocabulary: not judged"
    dropped_tag = "#results tbody tr.dropped td.tag"
    unknown_tag = "#results tbody tr.unknown td.tag"
    assert "line-through" in _style(page, dropped_tag, "textDecorationLine")
    assert "line-through" not in _style(page, unknown_tag, "textDecorationLine")
    assert _style(page, unknown_tag, "color") != _style(page, dropped_tag, "color")
    assert "not in the model's vocabulary: not judged" in page.inner_text("#legend")
    assert "weight of the image stream" in page.inner_text("#alpha-help")
    assert "1 \u2212 \u03b1" in page.inner_text("#alpha-help")  # "1 minus alpha"


@pytest.mark.slow
def test_the_threshold_used_is_shown(browser, server, tiny_data):
    data, images = tiny_data
    record = read_annotations(data / "train.csv")[6]
    model_threshold = httpx.get(server + "/v1/model", headers={"X-API-Key": API_KEY}).json()[
        "threshold"
    ]
    page = browser.new_page()
    page.goto(server + "/")
    _summarize(page, images, record, tags=record.tags)
    shown = page.inner_text("#threshold-used")
    assert shown.startswith("Threshold used: ") and shown.endswith("(the model's default)")
    assert abs(float(shown.split()[2]) - model_threshold) < 1e-3
    _summarize(page, images, record, tags=record.tags, threshold="0.25", top_k="2")
    # The earlier answer's results are still shown: wait for the new one's line.
    page.wait_for_function(
        "document.querySelector('#threshold-used').innerText.includes('(yours)')", timeout=30_000
    )
    assert page.inner_text("#threshold-used") == "Threshold used: 0.250 (yours); top k: 2"


@pytest.mark.slow
def test_the_api_key_is_kept_out_of_local_storage_unless_remembered(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(server + "/")
    page.fill("#api-key", API_KEY)
    page.fill("#tags", "sky")
    page.click("#submit")
    page.wait_for_function("document.querySelector('#error').textContent.length > 0")
    assert page.evaluate("localStorage.getItem('magneto-api-key')") is None
    assert page.evaluate("sessionStorage.getItem('magneto-api-key')") == API_KEY
    page.reload()
    assert page.input_value("#api-key") == API_KEY  # same tab: still there
    assert not page.is_checked("#remember-key")
    other_tab = context.new_page()
    other_tab.goto(server + "/")
    assert other_tab.input_value("#api-key") == ""  # not shared beyond the tab

    page.check("#remember-key")
    assert page.evaluate("localStorage.getItem('magneto-api-key')") == API_KEY
    assert page.evaluate("sessionStorage.getItem('magneto-api-key')") is None
    third_tab = context.new_page()
    third_tab.goto(server + "/")
    assert third_tab.input_value("#api-key") == API_KEY
    assert third_tab.is_checked("#remember-key")

    third_tab.uncheck("#remember-key")  # forgetting removes it again
    assert third_tab.evaluate("localStorage.getItem('magneto-api-key')") is None
    context.close()


@pytest.mark.slow
def test_known_tags_are_offered_from_the_vocabulary(browser, server):
    page = browser.new_page()
    page.goto(server + "/")
    page.wait_for_function("document.querySelector('#vocab-hint').textContent.includes('API key')")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    page.wait_for_function("document.querySelector('#vocab-hint').textContent.includes('knows')")
    everything = httpx.get(
        server + "/v1/model/vocabulary", headers={"X-API-Key": API_KEY}, params={"limit": 1000}
    ).json()
    assert f"knows {everything['total']} tags" in page.inner_text("#vocab-hint")
    word = everything["tags"][0]
    prefix = word[:2].upper()
    expected = httpx.get(
        server + "/v1/model/vocabulary",
        headers={"X-API-Key": API_KEY},
        params={"prefix": prefix, "limit": 50},
    ).json()
    page.fill("#vocab-search", prefix)
    page.wait_for_function(  # "1 known tag starts with", "3 known tags start with"
        f"document.querySelector('#vocab-hint').textContent.includes('with \"{prefix}\"')"
    )
    options = page.eval_on_selector_all("#vocabulary option", "os => os.map(o => o.value)")
    assert options == expected["tags"] and word in options
    page.fill("#tags", "beach,")
    page.fill("#vocab-search", word)
    page.click("#vocab-add")
    page.wait_for_function("document.querySelector('#tags').value !== 'beach,'")
    assert page.input_value("#tags") == f"beach, {word}"
    assert page.input_value("#vocab-search") == ""


ARTIFACTS = Path(os.environ.get("MAGNETO_TEST_ARTIFACTS", "build/test-artifacts"))


@pytest.mark.slow
def test_reasons_stream_bars_and_the_attention_overlay_on_a_phone(browser, server, tiny_data):
    """On a phone-sized viewport, without a JavaScript error: every tag says why, and clicking
    one draws its attention over the picture (and clicking again takes it away)."""
    data, images = tiny_data
    record = next(r for r in read_annotations(data / "train.csv") if len(r.tags) >= 3)
    page = browser.new_page(viewport={"width": 375, "height": 740})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    _summarize(page, images, record, tags=[*record.tags, "Unicorn"], top_k="1")
    why = page.locator("#results tbody td.why").all_inner_texts()
    assert len(why) == len(record.tags) + 1 and all(why)
    assert why[-1] == "not judged: the model does not know this tag"
    kept = page.locator("#results tbody tr.kept td.why").all_inner_texts()
    assert len(kept) <= 1 and all(w.startswith("kept") for w in kept)
    dropped = page.locator("#results tbody tr.dropped td.why").all_inner_texts()
    assert dropped and all(
        w == "dropped: only the top 1 are kept" or w.startswith("dropped: its score is below")
        for w in dropped
    )
    assert page.locator("#results tbody tr:not(.unknown) .mini.image").count() == len(record.tags)
    tag = page.locator("#results tbody tr.explainable td.tag").first
    tag.click()
    assert page.is_visible("#overlay")
    levels = page.evaluate(
        """() => { const c = document.querySelector('#overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const alphas = new Set(); for (let i = 3; i < d.length; i += 4 * 97) alphas.add(d[i]);
        return alphas.size; }"""
    )
    assert levels > 3  # a heat map, not a flat wash
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-overlay-phone.png"), full_page=True)
    tag.click()
    assert not page.is_visible("#overlay")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375 + 1  # no sideways page
    assert errors == []


@pytest.mark.slow
def test_add_takes_the_offered_tag_and_the_hint_counts_right(browser, server):
    everything = httpx.get(
        server + "/v1/model/vocabulary", headers={"X-API-Key": API_KEY}, params={"limit": 1000}
    ).json()["tags"]
    page = browser.new_page()
    page.goto(server + "/")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    word = next(
        w for w in everything if sum(x.lower().startswith(w[:3].lower()) for x in everything) == 1
    )
    page.fill("#vocab-search", word[:3])
    hint = f'1 known tag starts with "{word[:3]}"'
    page.wait_for_function(f"document.querySelector('#vocab-hint').textContent.includes('{hint}')")
    page.fill("#tags", "sky,")
    page.click("#vocab-add")
    page.wait_for_function(f"document.querySelector('#tags').value.endsWith('{word}')")
    assert page.input_value("#tags") == f"sky, {word}"
