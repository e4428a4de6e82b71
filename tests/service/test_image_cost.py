"""What one caller can make the service spend: pixels per batch call, work for a gone client.

A live ``magneto serve`` with one decode thread, so that a batch of large images queues up
behind it the way it does under load. The images are 16-bit PNGs of 6300x6300 pixels in
under 100 KB: about a second of decoding each, for almost nothing on the wire.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from magneto.infer.checkpoint import load_checkpoint
from tests.data.test_image_memory import SIDE, big_grey16_png
from tests.service.conftest import start_server, stop_server

BATCH_PIXELS = 400_000_000  # 10 of the large images fit, 11 do not


@pytest.fixture(scope="module")
def costly(checkpoint):
    proc, url = start_server(
        checkpoint,
        "--preprocess-threads",
        "1",
        env={"MAGNETO_MAX_BATCH_PIXELS": str(BATCH_PIXELS)},
    )
    yield url, load_checkpoint(checkpoint).vocabulary.words[0]
    stop_server(proc)


@pytest.fixture(scope="module")
def huge_item(costly):
    _, word = costly
    return {"image_base64": base64.b64encode(big_grey16_png()).decode(), "tags": [word]}


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{selector}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _abandoned(url: str) -> tuple[float, float]:
    name = "magneto_abandoned_items_total"
    return _metric(url, name, stage="decode"), _metric(url, name, stage="model")


@pytest.mark.slow
def test_a_batch_over_the_pixel_budget_is_refused_before_decoding(costly, huge_item):
    url, _ = costly
    eleven = {"items": [huge_item] * 11}  # 11 x 39.7 M pixels > 400 M
    started = time.perf_counter()
    response = httpx.post(url + "/v1/summarize/batch", json=eleven, timeout=120)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "batch_too_large"
    assert str(11 * SIDE * SIDE) in error["message"] and str(BATCH_PIXELS) in error["message"]
    assert time.perf_counter() - started < 5  # decoding them would take 11 s and more


def test_a_huge_16_bit_image_within_the_budgets_is_scored(costly, huge_item):
    url, word = costly
    response = httpx.post(url + "/v1/summarize/batch", json={"items": [huge_item]}, timeout=120)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert [t["tag"] for t in result["tags"]] == [word]


@pytest.mark.slow
def test_work_stops_when_the_client_hangs_up(costly, huge_item):
    url, _ = costly
    forward_passes = _metric(url, "magneto_batch_size_count")
    before = _abandoned(url)
    body = json.dumps({"items": [huge_item] * 8}).encode()
    where = urlsplit(url)
    head = (
        f"POST /v1/summarize/batch HTTP/1.1\r\nHost: {where.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(head + body)
        time.sleep(0.5)  # the first image is being decoded, the other 7 wait for the thread
    deadline = time.time() + 60
    while time.time() < deadline:
        decode, model = (a - b for a, b in zip(_abandoned(url), before, strict=True))
        if decode + model == 8:
            break
        time.sleep(0.2)
    # every item was given up: most before their decode, those already decoded before the
    # model; and no forward pass ran for them
    assert decode + model == 8, (decode, model)
    assert decode >= 5, (decode, model)
    assert _metric(url, "magneto_batch_size_count") == forward_passes
