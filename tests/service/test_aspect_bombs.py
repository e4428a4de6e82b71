"""Aspect-ratio bombs at the service: a few hundred bytes of PNG claiming 1,000,000x1 pixels
get a 4xx at once, and cost the server neither memory nor time."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest

from magneto.data.annotation_files import read_annotations
from tests.conftest import strip_png
from tests.service.conftest import start_server, stop_server

pytestmark = pytest.mark.slow  # a live server


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def sample(tiny_data):
    data, images = tiny_data
    record = read_annotations(data / "train.csv")[6]
    return (images / record.image_path).read_bytes(), list(record.tags)


@pytest.fixture(scope="module")
def served(checkpoint):
    proc, url = start_server(checkpoint)
    yield proc, url
    stop_server(proc)


@pytest.mark.parametrize(("width", "height"), [(1_000_000, 1), (100_000, 1), (1, 40_000)])
def test_a_strip_is_422_at_once_and_costs_nothing(served, width, height):
    proc, url = served
    before = rss_mib(proc.pid)
    started = time.perf_counter()
    reply = httpx.post(
        url + "/v1/summarize",
        files={"image": ("strip.png", strip_png(width, height))},
        data={"tags": "sky,sea"},
        timeout=60,
    )
    seconds = time.perf_counter() - started
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["code"] == "image_aspect_ratio"
    assert f"{width}x{height}" in reply.json()["error"]["message"]
    assert seconds < 2 and rss_mib(proc.pid) - before < 300


def test_in_a_batch_the_strip_fails_alone(served, sample):
    _, url = served
    raw, tags = sample
    good = {"image_base64": base64.b64encode(raw).decode(), "tags": tags}
    bomb = {"image_base64": base64.b64encode(strip_png(1_000_000, 1)).decode(), "tags": tags}
    reply = httpx.post(url + "/v1/summarize/batch", json={"items": [good, bomb, good]}, timeout=60)
    results = reply.json()["results"]
    assert reply.status_code == 200 and len(results) == 3
    assert results[1]["status"] == 422 and results[1]["error"]["code"] == "image_aspect_ratio"
    assert "kept_tags" in results[0] and "kept_tags" in results[2]
