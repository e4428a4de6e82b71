"""``explain: true`` on the API: the reason, both stream scores and the attention grid of every
known tag; without it, the answer is exactly what it was."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from magneto.data.annotation_files import read_annotations
from magneto.infer.predictor import Predictor
from magneto.service.app import create_app
from magneto.service.settings import ServiceSettings

PLAIN_KEYS = {"kept_tags", "tags", "unknown_tags", "threshold", "model", "timing", "request_id"}
TAG_KEYS = {"tag", "score", "kept", "alpha", "known"}


@pytest.fixture(scope="module")
def client(checkpoint, tiny_data):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    data, images = tiny_data
    record = read_annotations(data / "train.csv")[6]
    with TestClient(create_app(ServiceSettings(), predictor=predictor)) as c:
        yield c, (images / record.image_path).read_bytes(), [*record.tags, "unicorn"]


def test_without_explain_the_answer_has_exactly_the_old_fields(client):
    c, image, tags = client
    for reply in (
        c.post("/v1/summarize", files={"image": ("a.jpg", image)}, data={"tags": ",".join(tags)}),
        c.post(
            "/v1/summarize", json={"image_base64": base64.b64encode(image).decode(), "tags": tags}
        ),
    ):
        body = reply.json()
        assert reply.status_code == 200 and set(body) == PLAIN_KEYS
        assert all(set(t) == TAG_KEYS for t in body["tags"])


def test_explain_gives_reasons_stream_scores_and_a_grid_per_known_tag(client):
    c, image, tags = client
    data = {"tags": ",".join(tags), "explain": "true", "top_k": "1"}
    multipart = c.post("/v1/summarize", files={"image": ("a.jpg", image)}, data=data)
    item = {"image_base64": base64.b64encode(image).decode(), "tags": tags, "top_k": 1}
    as_json = c.post("/v1/summarize", json={**item, "explain": True})
    for reply in (multipart, as_json):
        body = reply.json()
        assert reply.status_code == 200, body
        rows, columns = body["attention_grid"]
        known = [t for t in body["tags"] if t["known"]]
        assert [t["reason"] for t in body["tags"] if not t["known"]] == ["unknown"]
        assert sum(t["reason"] == "kept" for t in known) <= 1  # top_k 1
        for t in known:
            assert t["kept"] == t["reason"].startswith("kept")
            assert 0 <= t["tag_score"] <= 1 and 0 <= t["image_score"] <= 1
            assert len(t["attention"]) == rows and all(len(r) == columns for r in t["attention"])
    batch = c.post("/v1/summarize/batch", json={"items": [item, {**item, "explain": True}]})
    plain, rich = batch.json()["results"]
    assert set(plain) == PLAIN_KEYS and "attention_grid" in rich
    assert [t["score"] for t in plain["tags"]] == [t["score"] for t in rich["tags"]]


def test_the_openapi_document_shows_the_explanation_fields_with_examples(client):
    c, _, _ = client
    schemas = c.get("/openapi.json").json()["components"]["schemas"]
    fields = schemas["TagResult"]["properties"]
    assert {"reason", "tag_score", "image_score", "attention"} <= set(fields)
    assert fields["attention"]["examples"][0][1][1] == 0.31
    assert "explain" in schemas["SummarizeResponse"]["properties"]["attention_grid"]["description"]
