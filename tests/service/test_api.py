"""Every endpoint, both request forms, every bad input, the API key and batching."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import httpx
import pytest
from PIL import Image

from magneto.data.annotation_files import read_annotations
from magneto.data.images import decode_image
from magneto.errors import ImageError
from tests.service.conftest import API_KEY


@pytest.fixture(scope="module")
def samples(tiny_data):
    """(image bytes, tags) of validation items whose images decode."""
    data, images = tiny_data
    out = []
    for record in read_annotations(data / "val.csv") + read_annotations(data / "train.csv"):
        raw = (images / record.image_path).read_bytes()
        try:
            decode_image(raw)
        except ImageError:
            continue
        out.append((raw, list(record.tags)))
    return out


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _scores(body: dict) -> list[float | None]:
    return [t["score"] for t in body["tags"]]


@pytest.mark.slow
def test_health_readiness_model_and_metrics(client, checkpoint):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    from magneto.infer.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = client.get("/v1/model").json()
    assert model["architecture"] == "magneto" and model["vocabulary_size"] == 81
    assert model["threshold"] == pytest.approx(ckpt.threshold)
    assert model["training_metrics"]["val_f1"] == pytest.approx(ckpt.metrics["val_f1"])
    assert model["uses_images"] is True and model["input_size"] == 64
    metrics = client.get("/metrics").text
    for name in (
        "magneto_request_duration_seconds_bucket",
        "magneto_batch_size_bucket",
        "magneto_requests_total",
        "magneto_queue_depth",
    ):
        assert name in metrics, name
    assert 'route="/readyz",status="200"' in metrics


def test_multipart_tags_as_repeated_fields_json_array_or_comma_string(client, samples):
    raw, tags = samples[0]
    tags = [*tags, "Unicorn"]
    forms = [
        [("tags", (None, t)) for t in tags],  # repeated fields
        [("tags", (None, json.dumps(tags)))],  # one JSON array
        [("tags", (None, ",".join(tags)))],  # one comma-separated string
    ]
    bodies = []
    for fields in forms:
        response = client.post(
            "/v1/summarize", files=[("image", ("x.jpg", raw, "image/jpeg")), *fields]
        )
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    first = bodies[0]
    assert [t["tag"] for t in first["tags"]] == tags  # user spelling and order
    assert first["unknown_tags"] == ["Unicorn"]
    unicorn = first["tags"][-1]
    assert unicorn == {
        "tag": "Unicorn",
        "score": None,
        "kept": False,
        "alpha": None,
        "known": False,
    }
    assert first["kept_tags"] == [t["tag"] for t in first["tags"] if t["kept"]]
    assert all(0 <= t["score"] <= 1 and 0 <= t["alpha"] <= 1 for t in first["tags"][:-1])
    assert all(t["kept"] == (t["score"] >= first["threshold"]) for t in first["tags"][:-1])
    assert first["model"]["name"] == "magneto" and len(first["model"]["version"]) == 12
    assert first["timing"]["total_ms"] >= first["timing"]["model_ms"] > 0
    for other in bodies[1:]:
        assert _scores(other) == pytest.approx(_scores(first), abs=1e-6)


def test_json_form_matches_multipart_and_request_ids_round_trip(client, samples):
    raw, tags = samples[1]
    multipart = client.post(
        "/v1/summarize", files={"image": ("a.jpg", raw)}, data={"tags": ",".join(tags)}
    ).json()
    response = client.post(
        "/v1/summarize",
        json={"image_base64": base64.b64encode(raw).decode(), "tags": tags},
        headers={"X-Request-ID": "my-request-42"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "my-request-42"
    body = response.json()
    assert body["request_id"] == "my-request-42"
    assert _scores(body) == pytest.approx(_scores(multipart), abs=1e-6)
    data_url = "data:image/jpeg;base64," + base64.b64encode(raw).decode()
    again = client.post("/v1/summarize", json={"image_base64": data_url, "tags": ",".join(tags)})
    assert _scores(again.json()) == pytest.approx(_scores(body), abs=1e-6)
    generated = client.post("/v1/summarize", json={"image_base64": data_url, "tags": tags})
    assert len(generated.headers["x-request-id"]) == 32


def test_threshold_top_k_and_min_keep(client, samples):
    raw, tags = samples[2]
    image = base64.b64encode(raw).decode()

    def kept(**options):
        response = client.post(
            "/v1/summarize", json={"image_base64": image, "tags": tags, **options}
        )
        assert response.status_code == 200, response.text
        return response.json()

    assert len(kept(threshold=0.0)["kept_tags"]) == len(tags)
    assert kept(threshold=1.0)["kept_tags"] == [] or all(
        t["score"] >= 1.0 for t in kept(threshold=1.0)["tags"] if t["kept"]
    )
    top = kept(threshold=0.0, top_k=1)
    best = max(top["tags"], key=lambda t: t["score"])
    assert top["kept_tags"] == [best["tag"]]
    assert len(kept(threshold=1.0, min_keep=2)["kept_tags"]) == min(2, len(tags))
    form = client.post(
        "/v1/summarize",
        files={"image": ("a.jpg", raw)},
        data={"tags": ",".join(tags), "threshold": "0", "top_k": "1"},
    ).json()
    assert form["kept_tags"] == top["kept_tags"] and form["threshold"] == 0.0


def test_batch_endpoint_matches_single_requests(client, samples):
    items = [
        {"image_base64": base64.b64encode(raw).decode(), "tags": tags} for raw, tags in samples[:3]
    ]
    response = client.post("/v1/summarize/batch", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for item, result in zip(items, results, strict=True):
        single = client.post("/v1/summarize", json=item).json()
        assert _scores(result) == pytest.approx(_scores(single), abs=1e-5)


def test_a_bad_batch_item_fails_alone(client, samples):
    good = {"image_base64": base64.b64encode(samples[0][0]).decode(), "tags": ["sky"]}
    bad = {"image_base64": "aGVsbG8=", "tags": ["sky"]}  # "hello": not an image
    response = client.post("/v1/summarize/batch", json={"items": [good, bad]})
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert _scores(first) == pytest.approx(_scores(client.post("/v1/summarize", json=good).json()))
    assert set(second) == {"index", "status", "error"}
    assert second["index"] == 1 and second["status"] == 400
    assert second["error"]["code"] == "invalid_image"
    assert second["error"]["message"].startswith("items[1]: ")


def test_batch_items_get_their_own_answer_or_the_error_a_single_request_gets(client, samples):
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    items = [
        {"image_base64": b64(samples[0][0]), "tags": samples[0][1]},
        {"image_base64": b64(b"this is not an image"), "tags": ["sky"]},
        {"image_base64": "@@not base64@@", "tags": ["sky"]},
        {"image_base64": b64(samples[1][0]), "tags": []},
        {"image_base64": b64(samples[1][0]), "tags": samples[1][1]},
        {"image_base64": b64(_png((600, 500))), "tags": ["sky"]},
        {"image_base64": b64(samples[2][0]), "tags": ["sky"], "top_k": 0},
        [1, 2],
    ]
    expected = {
        1: (400, "invalid_image"),
        2: (400, "invalid_base64"),
        3: (400, "missing_tags"),
        5: (413, "image_too_large"),
        6: (422, "invalid_request"),
        7: (400, "malformed_json"),
    }
    response = client.post("/v1/summarize/batch", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(items)
    for index, (item, result) in enumerate(zip(items, results, strict=True)):
        single = client.post("/v1/summarize", json=item)
        if index not in expected:
            assert single.status_code == 200 and "error" not in result
            assert set(result) == set(single.json())
            assert _scores(result) == pytest.approx(_scores(single.json()), abs=1e-5)
            assert result["kept_tags"] == single.json()["kept_tags"]
            continue
        status, code = expected[index]
        assert single.status_code == status, single.text
        assert result == {
            "index": index,
            "status": status,
            "error": {
                "code": code,
                "message": f"items[{index}]: " + single.json()["error"]["message"],
            },
        }


def _multipart(client, raw=None, tags="sky", **data):
    files = {"image": ("x.jpg", raw, "image/jpeg")} if raw is not None else None
    return client.post("/v1/summarize", files=files, data={"tags": tags, **data} if tags else data)


def _truncated(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


@pytest.mark.parametrize(
    ("make", "status", "code", "fragment"),
    [
        (
            lambda c, s: c.post(
                "/v1/summarize", data={"tags": "sky"}, files={"other": ("a", b"x")}
            ),
            400,
            "missing_image",
            "no image",
        ),
        (
            lambda c, s: _multipart(c, b"this is not an image"),
            400,
            "invalid_image",
            "not a recognised image",
        ),
        (lambda c, s: _multipart(c, _truncated(s[0][0])), 400, "invalid_image", "truncated"),
        (lambda c, s: _multipart(c, b"\xff" * 400_000), 413, "payload_too_large", "limit"),
        (lambda c, s: _multipart(c, _png((600, 500))), 413, "image_too_large", "pixels"),
        (lambda c, s: _multipart(c, s[0][0], tags=""), 400, "missing_tags", "no tags"),
        (lambda c, s: _multipart(c, s[0][0], tags=" , ,"), 400, "missing_tags", "no tags"),
        (
            lambda c, s: _multipart(c, s[0][0], tags=",".join(f"t{i}" for i in range(21))),
            422,
            "too_many_tags",
            "limit is 20",
        ),
        (lambda c, s: _multipart(c, s[0][0], tags="x" * 41), 422, "tag_too_long", "limit is 40"),
        (lambda c, s: _multipart(c, s[0][0], threshold="2"), 422, "invalid_option", "threshold"),
        (lambda c, s: _multipart(c, s[0][0], threshold="high"), 422, "invalid_option", "threshold"),
        (lambda c, s: _multipart(c, s[0][0], top_k="0"), 422, "invalid_option", "top_k"),
        (lambda c, s: _multipart(c, s[0][0], tags='["sky", '), 400, "malformed_json", "JSON array"),
        (lambda c, s: _multipart(c, s[0][0], topk="1"), 422, "invalid_request", "topk"),
        (
            lambda c, s: c.post(
                "/v1/summarize",
                content=b"--x--",
                headers={"content-type": "multipart/form-data"},
            ),
            400,
            "malformed_multipart",
            "boundary",
        ),
        (
            lambda c, s: c.post(
                "/v1/summarize",
                data={"tags": "sky"},
                files=[("image", ("a.jpg", s[0][0])), ("other", ("b.jpg", s[0][0]))],
            ),
            400,
            "malformed_multipart",
            "too many files",
        ),
        (
            lambda c, s: c.post(
                "/v1/summarize", content=b"{oops", headers={"content-type": "application/json"}
            ),
            400,
            "malformed_json",
            "not valid JSON",
        ),
        (lambda c, s: c.post("/v1/summarize", json=[1, 2]), 400, "malformed_json", "JSON object"),
        (
            lambda c, s: c.post(
                "/v1/summarize", json={"image_base64": "@@not base64@@", "tags": ["a"]}
            ),
            400,
            "invalid_base64",
            "base64",
        ),
        (
            lambda c, s: c.post("/v1/summarize", json={"tags": ["a"]}),
            400,
            "missing_image",
            "no image",
        ),
        (
            lambda c, s: c.post("/v1/summarize", json={"image_base64": "aGk=", "tags": []}),
            400,
            "missing_tags",
            "no tags",
        ),
        (
            lambda c, s: c.post(
                "/v1/summarize", json={"image_base64": "aGk=", "tags": ["a"], "top_k": -1}
            ),
            422,
            "invalid_request",
            "top_k",
        ),
        (
            lambda c, s: c.post(
                "/v1/summarize", json={"image_base64": "aGk=", "tags": ["a"], "colour": 1}
            ),
            422,
            "invalid_request",
            "colour",
        ),
        (
            lambda c, s: c.post("/v1/summarize", json={"image_base64": "aGk=", "tags": [3]}),
            422,
            "invalid_request",
            "tags",
        ),
        (
            lambda c, s: c.post(
                "/v1/summarize", content=b"image", headers={"content-type": "image/jpeg"}
            ),
            415,
            "unsupported_media_type",
            "multipart/form-data",
        ),
        (lambda c, s: c.post("/v1/summarize", content=b"x"), 415, "unsupported_media_type", "json"),
        (
            lambda c, s: c.post("/v1/summarize/batch", data={"a": "b"}),
            415,
            "unsupported_media_type",
            "items",
        ),
        (
            lambda c, s: c.post("/v1/summarize/batch", json={"items": []}),
            400,
            "malformed_json",
            "at least one",
        ),
        (
            lambda c, s: c.post(
                "/v1/summarize/batch", json={"items": [{"image_base64": "aGk=", "tags": ["a"]}] * 9}
            ),
            422,
            "too_many_items",
            "limit is 8",
        ),
        (lambda c, s: c.get("/v1/nothing"), 404, "not_found", "Not Found"),
        (lambda c, s: c.get("/v1/summarize"), 405, "method_not_allowed", "Not Allowed"),
    ],
)
def test_bad_input_gets_a_json_error_never_a_500(client, samples, make, status, code, fragment):
    response = make(client, samples)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert fragment.lower() in body["error"]["message"].lower()
    assert response.headers["content-type"].startswith("application/json")


def test_an_unknown_field_is_refused_alike_in_multipart_and_json(client, samples):
    raw, tags = samples[0]
    form = _multipart(client, raw, tags=",".join(tags), topk="1")  # curl -F topk=1
    body = {"image_base64": base64.b64encode(raw).decode(), "tags": tags, "topk": 1}
    as_json = client.post("/v1/summarize", json=body)
    for response in (form, as_json):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"
        assert response.json()["error"]["message"].startswith("topk: ")
    assert form.json() == as_json.json()
    empty = _multipart(client, raw, tags=",".join(tags), topk="")  # even when left empty
    assert empty.status_code == 422 and "topk" in empty.json()["error"]["message"]


def test_chunked_body_over_the_limit_is_413(server):
    def chunks():
        for _ in range(40):
            yield b"x" * 10_000

    with httpx.Client(base_url=server, headers={"X-API-Key": API_KEY}) as client:
        response = client.post(
            "/v1/summarize", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_api_key(server, samples):
    raw, tags = samples[0]
    files = {"image": ("x.jpg", raw)}
    data = {"tags": ",".join(tags)}
    with httpx.Client(base_url=server) as anonymous:
        missing = anonymous.post("/v1/summarize", files=files, data=data)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "missing_api_key"
        assert missing.headers["www-authenticate"] == "ApiKey"
        wrong = anonymous.post(
            "/v1/summarize", files=files, data=data, headers={"X-API-Key": "nope"}
        )
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert anonymous.get("/v1/model").status_code == 401
        # Probes and the page stay open.
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/").status_code == 200
        right = anonymous.post(
            "/v1/summarize", files=files, data=data, headers={"X-API-Key": API_KEY}
        )
        assert right.status_code == 200


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(client, server, samples):
    requests = [(raw, tags[: 1 + i % len(tags)]) for i, (raw, tags) in enumerate(samples * 3)][:32]
    singles = []
    for raw, tags in requests:
        singles.append(
            client.post(
                "/v1/summarize", files={"image": ("a.jpg", raw)}, data={"tags": ",".join(tags)}
            ).json()
        )
    before = _batch_stats(client)

    async def fire():
        async with httpx.AsyncClient(
            base_url=server, headers={"X-API-Key": API_KEY}, timeout=60
        ) as ac:
            return await asyncio.gather(
                *[
                    ac.post(
                        "/v1/summarize",
                        files={"image": ("a.jpg", raw)},
                        data={"tags": ",".join(tags)},
                    )
                    for raw, tags in requests
                ]
            )

    responses = asyncio.run(fire())
    after = _batch_stats(client)
    for response, single, (_, tags) in zip(responses, singles, requests, strict=True):
        assert response.status_code == 200
        body = response.json()
        assert [t["tag"] for t in body["tags"]] == tags
        assert _scores(body) == pytest.approx(_scores(single), abs=1e-5)
        assert body["kept_tags"] == single["kept_tags"]
    batches = after[0] - before[0]
    items = after[1] - before[1]
    assert items == len(requests)
    assert batches < items  # some forward passes served several requests


def _batch_stats(client) -> tuple[float, float]:
    count = total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("magneto_batch_size_count"):
            count = float(line.split()[-1])
        elif line.startswith("magneto_batch_size_sum"):
            total = float(line.split()[-1])
    return count, total


def test_a_bad_request_never_breaks_the_others(server, samples):
    good = samples[:6]

    async def fire():
        async with httpx.AsyncClient(
            base_url=server, headers={"X-API-Key": API_KEY}, timeout=60
        ) as ac:
            calls = []
            for i, (raw, tags) in enumerate(good):
                calls.append(
                    ac.post(
                        "/v1/summarize",
                        files={"image": ("a.jpg", raw)},
                        data={"tags": ",".join(tags)},
                    )
                )
                calls.append(
                    ac.post(
                        "/v1/summarize",
                        files={"image": ("b.jpg", raw[: len(raw) // 2])},
                        data={"tags": ",".join(tags)},
                    )
                )
                if i % 2:
                    calls.append(
                        ac.post(
                            "/v1/summarize",
                            content=b"{",
                            headers={"content-type": "application/json"},
                        )
                    )
            return await asyncio.gather(*calls)

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == len(good)
    assert statuses.count(400) == len(responses) - len(good)
    with httpx.Client(base_url=server) as c:
        assert c.get("/readyz").status_code == 200
