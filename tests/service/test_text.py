"""Text in, text out: multipart fields are strict UTF-8 as JSON is, and an API key with
non-ASCII characters, sent as UTF-8, matches."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from magneto.data.annotation_files import read_annotations
from magneto.infer.predictor import Predictor
from magneto.service.app import create_app
from magneto.service.settings import ServiceSettings

KEY = "clé-ünïcode-密钥"


@pytest.fixture(scope="module")
def client(checkpoint, tiny_data):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    data, images = tiny_data
    record = read_annotations(data / "train.csv")[6]
    app = create_app(ServiceSettings(api_key=KEY), predictor=predictor)
    with TestClient(app) as c:
        yield c, (images / record.image_path).read_bytes(), list(record.tags)


@pytest.mark.parametrize("raw", [b"sky,\xed\xa0\x80", b"\xff\xfe", b"sky\xc3"])
def test_a_tags_field_that_is_not_utf8_is_a_400(client, raw):
    c, image, _ = client
    reply = c.post(
        "/v1/summarize",
        files={"image": ("a.jpg", image), "tags": (None, raw)},
        headers={"X-API-Key": KEY.encode()},
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (
        error["code"] == "malformed_multipart"
        and "'tags' is not valid utf-8 text" in error["message"]
    )


def test_valid_utf8_tags_and_a_non_ascii_key_work(client):
    c, image, tags = client
    reply = c.post(
        "/v1/summarize",
        files={"image": ("a.jpg", image), "tags": (None, ",".join([*tags, "café"]).encode())},
        headers={"X-API-Key": KEY.encode()},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["unknown_tags"] == ["café"]  # in the user's spelling, not garbled
    wrong = c.post(
        "/v1/summarize",
        files={"image": ("a.jpg", image), "tags": (None, b"sky")},
        headers={"X-API-Key": KEY.encode("utf-8")[:-1]},
    )
    assert wrong.status_code == 401
