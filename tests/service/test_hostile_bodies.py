"""Small hostile bodies that used to be answered 500 (with a logged traceback); now a 4xx.

Each is sent to a real server (``magneto serve``, the limits of ``conftest.LIMITS``) on both
endpoints where it applies: a batch item that is bad fails alone, a bad batch body fails whole.
Also: the OpenAPI document calls valid exactly what is accepted (for the bodies tried here), and
a method a route does not answer is a JSON 405 with an ``Allow`` header.
"""

from __future__ import annotations

import base64
import io
import json

import jsonschema
import pytest
from PIL import Image

DEEP = "[" * 100_000 + "]" * 100_000  # 200 kB, under the 300 kB body limit
BIG = "1" * 5000  # digits: over Python's int_max_str_digits (4300)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def b64(png) -> str:
    return base64.b64encode(png).decode()


def _error(response, status: int, code: str) -> str:
    """The message of a JSON error with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]["message"]


def _item(b64: str, rest: str) -> str:
    return '{"image_base64": "' + b64 + '", ' + rest + "}"


def _batch(*items: str) -> str:
    return '{"items": [' + ", ".join(items) + "]}"


def _form(client, png: bytes, fields: dict[str, str]):
    return client.post("/v1/summarize", files={"image": ("a.png", png, "image/png")}, data=fields)


# 1. JSON nested 100,000 deep: json.loads raised RecursionError.


def test_json_nested_deeply_is_a_400_on_both_endpoints(client, b64):
    for body in (DEEP, _item(b64, f'"tags": {DEEP}')):
        message = _error(
            client.post("/v1/summarize", content=body, headers=JSON), 400, "malformed_json"
        )
        assert "nested too deeply" in message
    for body in (DEEP, _batch(_item(b64, f'"tags": {DEEP}'))):
        batch = client.post("/v1/summarize/batch", content=body, headers=JSON)
        assert "nested too deeply" in _error(batch, 400, "malformed_json")


def test_a_deeply_nested_json_array_in_a_multipart_tags_field_is_a_400(client, png):
    message = _error(_form(client, png, {"tags": DEEP}), 400, "malformed_json")
    assert message == "tags (a JSON array) is nested too deeply"


# 2. An integer of 5,000 digits: int() raised ValueError (Python's limit on digits).


def test_an_integer_of_5000_digits_is_a_400_on_both_endpoints(client, b64):
    item = _item(b64, f'"tags": ["sky"], "top_k": {BIG}')
    for path, body in (("/v1/summarize", item), ("/v1/summarize/batch", _batch(item))):
        message = _error(client.post(path, content=body, headers=JSON), 400, "malformed_json")
        assert message == "a number has 5000 digits; the limit is 4300"


def test_an_integer_of_5000_digits_in_a_form_is_refused(client, png):
    in_tags = _form(client, png, {"tags": f'["sky", {BIG}]'})
    assert "5000 digits" in _error(in_tags, 400, "malformed_json")
    as_option = _form(client, png, {"tags": "sky", "top_k": BIG})
    assert "top_k" in _error(as_option, 422, "invalid_option")


def test_an_integer_just_under_the_digit_limit_is_still_accepted_as_top_k(client, b64):
    body = _item(b64, f'"tags": ["sky", "clouds"], "top_k": {"9" * 4300}')
    response = client.post("/v1/summarize", content=body, headers=JSON)
    assert response.status_code == 200, response.text


# 3. A lone surrogate in a tag: the tag is echoed, and "\ud800" cannot be written as UTF-8.

LONE = "tags must be valid Unicode text (a lone surrogate such as \\ud800 is not)"


@pytest.mark.parametrize(
    "tags",
    [
        b'["sky", "\\ud800"]',  # the JSON escape
        b'"sky,\\udfff"',  # in the comma-separated string form
        b'["sky", "\xed\xa0\x80"]',  # a surrogate encoded as UTF-8: json.loads lets it through
    ],
)
def test_a_lone_surrogate_in_a_tag_is_a_422(client, b64, tags):
    body = b'{"image_base64": "%s", "tags": %s}' % (b64.encode(), tags)
    response = client.post("/v1/summarize", content=body, headers=JSON)
    assert _error(response, 422, "invalid_tags") == LONE


def test_a_lone_surrogate_fails_its_batch_item_alone(client, b64):
    body = _batch(_item(b64, '"tags": ["sky"]'), _item(b64, '"tags": ["\\ud800"]'))
    response = client.post("/v1/summarize/batch", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    good, bad = response.json()["results"]
    assert good["tags"][0]["tag"] == "sky"
    assert bad == {
        "index": 1,
        "status": 422,
        "error": {"code": "invalid_tags", "message": "items[1]: " + LONE},
    }


def test_a_lone_surrogate_in_a_multipart_tag_is_a_422(client, png):
    as_json_array = _form(client, png, {"tags": '["sky", "\\ud800"]'})
    assert _error(as_json_array, 422, "invalid_tags") == LONE
    # A charset parameter can name a codec that makes one out of plain ASCII bytes.
    body = (
        b'--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        + png
        + b'\r\n--xx\r\nContent-Disposition: form-data; name="tags"\r\n\r\n\\ud800\r\n--xx--\r\n'
    )
    headers = {"content-type": "multipart/form-data; boundary=xx; charset=unicode_escape"}
    escaped = client.post("/v1/summarize", content=body, headers=headers)
    assert _error(escaped, 422, "invalid_tags") == LONE


def test_a_lone_surrogate_quoted_in_an_error_message_is_escaped(client, b64):
    body = _item(b64, '"tags": ["sky"], "x\\ud800": 1')
    response = client.post("/v1/summarize", content=body, headers=JSON)
    assert _error(response, 422, "invalid_request")  # the unknown field, not a 500


def test_a_form_charset_whose_codec_fails_is_a_400(client, png):
    # Python's punycode codec raises UnicodeError (not UnicodeDecodeError) on "a.png".
    body = (
        b'--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        + png
        + b'\r\n--xx\r\nContent-Disposition: form-data; name="tags"\r\n\r\nsky\r\n--xx--\r\n'
    )
    headers = {"content-type": "multipart/form-data; boundary=xx; charset=punycode"}
    response = client.post("/v1/summarize", content=body, headers=headers)
    assert "charset" in _error(response, 400, "malformed_multipart")


# 4. The OpenAPI document calls valid what is accepted, and invalid what is refused.


def _body_schema(client, path: str, media: str) -> dict:
    operation = client.get("/openapi.json").json()["paths"][path]["post"]
    return operation["requestBody"]["content"][media]["schema"]


@pytest.mark.parametrize(
    ("fields", "accepted"),
    [
        ({"tags": ""}, False),
        ({"tags": []}, False),
        ({"tags": [" ", "\x1c"]}, False),  # str.strip() removes U+001C; regex \s would not
        ({"tags": " , ,"}, False),
        ({"image_base64": ""}, False),
        ({"tags": [f"t{i}" for i in range(21)]}, False),  # MAGNETO_MAX_TAGS=20
        ({"tags": ["x" * 41]}, False),  # MAGNETO_MAX_TAG_LENGTH=40
        ({"tags": "x" * 41}, False),
        ({"tags": ["", " sky "]}, True),
        ({"tags": " , sky"}, True),
        ({"tags": [f"t{i}" for i in range(20)]}, True),
        ({"tags": ["x" * 40]}, True),
        ({"tags": "sky", "top_k": 1, "threshold": None}, True),
    ],
)
def test_the_json_schema_agrees_with_the_server(client, b64, fields, accepted):
    body = {"image_base64": b64, **fields}
    schema = _body_schema(client, "/v1/summarize", "application/json")
    assert jsonschema.Draft202012Validator(schema).is_valid(body) is accepted
    response = client.post("/v1/summarize", json=body)
    assert (response.status_code == 200) is accepted, response.text
    batch_schema = _body_schema(client, "/v1/summarize/batch", "application/json")
    assert jsonschema.Draft202012Validator(batch_schema).is_valid({"items": [body]}) is accepted


def test_the_batch_schema_has_the_item_limit(client, b64):
    schema = _body_schema(client, "/v1/summarize/batch", "application/json")
    validator = jsonschema.Draft202012Validator(schema)
    item = {"image_base64": b64, "tags": ["sky"]}
    assert validator.is_valid({"items": [item] * 8}) and not validator.is_valid({"items": []})
    assert not validator.is_valid({"items": [item] * 9})  # MAGNETO_MAX_BATCH_ITEMS=8
    too_many = client.post("/v1/summarize/batch", json={"items": [item] * 9})
    _error(too_many, 422, "too_many_items")


@pytest.mark.parametrize(
    ("tags", "accepted"),
    [
        ([""], False),
        ([" ", "\u3000"], False),
        (["[sky"], False),  # a field that comes alone is read as a JSON array
        (["sky", "clouds"], True),
        (["  sky  "], True),
    ],
)
def test_the_multipart_schema_agrees_with_the_server(client, png, tags, accepted):
    schema = _body_schema(client, "/v1/summarize", "multipart/form-data")
    assert jsonschema.Draft202012Validator(schema).is_valid({"image": "png", "tags": tags}) is (
        accepted
    )
    files = [("image", ("a.png", png, "image/png")), *[("tags", (None, t)) for t in tags]]
    response = client.post("/v1/summarize", files=files)
    assert (response.status_code == 200) is accepted, response.text


def test_each_app_documents_its_own_limits():
    from magneto.service.app import create_app
    from magneto.service.settings import ServiceSettings

    def limits(app) -> tuple[int, int, int]:
        paths = app.openapi()["paths"]
        one = paths["/v1/summarize"]["post"]["requestBody"]["content"]["application/json"]
        batch = paths["/v1/summarize/batch"]["post"]["requestBody"]["content"]
        items = batch["application/json"]["schema"]["properties"]["items"]
        as_list, as_string = one["schema"]["properties"]["tags"]["anyOf"]
        return as_list["maxItems"], as_string["maxLength"], items["maxItems"]

    small = create_app(ServiceSettings(max_tags=3, max_tag_length=50, max_batch_items=2))
    assert limits(small) == (3, 5, 2)
    large = create_app(ServiceSettings(max_tags=300, max_tag_length=50, max_batch_items=9))
    assert limits(large) == (300, 50, 9)
    assert limits(small) == (3, 5, 2)  # the documents share no parts


def test_the_space_class_of_the_schema_is_what_str_strip_removes():
    import re

    from magneto.service.schemas import SPACE

    spaces = re.compile(f"[{SPACE}]")
    assert [c for c in map(chr, range(0x110000)) if bool(spaces.match(c)) != c.isspace()] == []


# 5. A method a route does not answer: 405, an Allow header, a JSON body.


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/summarize", "POST"),
        ("/v1/summarize/batch", "POST"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/v1/model", "GET"),
        ("/metrics", "GET"),
        ("/", "GET"),
    ],
)
@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "PATCH"])
def test_an_unsupported_method_is_a_405_with_an_allow_header(client, path, allowed, method):
    response = client.request(method, path)
    message = _error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed
    assert message == f"{method} is not allowed here; allowed: {allowed}"
    assert json.loads(response.text)  # a body, even for TRACE
