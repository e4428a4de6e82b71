"""``GET /v1/model/vocabulary``: paging, prefix look-up, limits, errors and its OpenAPI entry."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from magneto.data.vocabulary import normalize_tag
from magneto.infer.predictor import Predictor
from magneto.service.app import create_app
from magneto.service.routes.operations import MAX_VOCABULARY_PAGE
from magneto.service.settings import ServiceSettings
from magneto.service.vocabulary_listing import VocabularyListing

KEY = "vocabulary-key"
URL = "/v1/model/vocabulary"


@pytest.fixture(scope="module")
def words(checkpoint) -> list[str]:
    return Predictor.from_checkpoint(checkpoint, device="cpu").vocabulary.words


@pytest.fixture(scope="module")
def client(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    app = create_app(ServiceSettings(api_key=KEY), predictor=predictor)
    with TestClient(app, headers={"X-API-Key": KEY}) as c:
        yield c


def test_listing_sorts_case_insensitively_and_matches_prefixes_like_the_model():
    listing = VocabularyListing(["Sky", "sun", "Beach", "sunset", "SUNRISE", "Sea"])
    assert listing.page("", 0, 10) == (6, ["Beach", "Sea", "Sky", "sun", "SUNRISE", "sunset"])
    assert listing.page(" SU", 0, 10) == (3, ["sun", "SUNRISE", "sunset"])
    assert listing.page("su", 1, 1) == (3, ["SUNRISE"])
    assert listing.page("su", 5, 1) == (3, [])
    assert listing.page("x", 0, 10) == (0, [])


def test_pages_walk_the_whole_vocabulary_once(client, words):
    seen: list[str] = []
    offset = 0
    while True:
        page = client.get(URL, params={"offset": offset, "limit": 7}).json()
        assert page["total"] == len(words) and page["offset"] == offset and page["limit"] == 7
        assert len(page["tags"]) <= 7
        if not page["tags"]:
            break
        seen += page["tags"]
        offset += 7
    assert seen == sorted(words, key=normalize_tag)
    default = client.get(URL).json()
    assert default["limit"] == 100 and default["tags"] == seen[:100]


def test_prefix_filters_in_any_case(client, words):
    word = sorted(words)[len(words) // 2]
    prefix = word[:2]
    expected = sorted((w for w in words if normalize_tag(w).startswith(prefix.lower())), key=str)
    page = client.get(URL, params={"prefix": prefix.upper(), "limit": MAX_VOCABULARY_PAGE}).json()
    assert word in page["tags"]
    assert page["total"] == len(expected) and sorted(page["tags"], key=str) == expected
    none = client.get(URL, params={"prefix": "no-such-tag-anywhere"}).json()
    assert none == {"total": 0, "offset": 0, "limit": 100, "tags": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": MAX_VOCABULARY_PAGE + 1}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"prefix": "x" * 201}, "prefix"),
    ],
)
def test_bad_paging_is_a_json_422(client, params, field):
    response = client.get(URL, params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and field in error["message"]


def test_the_vocabulary_needs_the_api_key(client):
    response = client.get(URL, headers={"X-API-Key": ""})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    assert client.get(URL, headers={"X-API-Key": "wrong"}).status_code == 401


def test_openapi_documents_the_endpoint(client):
    schema = client.get("/openapi.json").json()
    operation = schema["paths"][URL]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert set(params) == {"offset", "limit", "prefix"}
    assert params["limit"]["schema"]["maximum"] == MAX_VOCABULARY_PAGE
    assert params["offset"]["schema"]["minimum"] == 0
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/VocabularyPage"}
    page = schema["components"]["schemas"]["VocabularyPage"]
    assert set(page["required"]) == {"total", "offset", "limit", "tags"}
    for status in ("401", "422", "503"):
        error = operation["responses"][status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    assert operation["security"] == [{"APIKeyHeader": []}]
