"""The API key: which keys are accepted at start-up, /metrics behind it, and its OpenAPI scheme."""

from __future__ import annotations

import os
import subprocess

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from magneto.infer.predictor import Predictor
from magneto.service.app import create_app
from magneto.service.settings import ServiceSettings
from tests.service.conftest import REPO, serve_argv

KEY = "metrics-key"


@pytest.fixture(scope="module")
def predictor(checkpoint) -> Predictor:
    return Predictor.from_checkpoint(checkpoint, device="cpu")


@pytest.mark.parametrize("key", ["   ", "\t", "\n", " secret", "secret ", "secret\r\n"])
def test_blank_or_padded_keys_are_refused(key, monkeypatch):
    with pytest.raises(ValidationError, match="whitespace"):
        ServiceSettings(api_key=key)
    with pytest.raises(ValidationError, match="whitespace"):
        ServiceSettings(api_key=SecretStr(key))
    monkeypatch.setenv("MAGNETO_API_KEY", key)
    with pytest.raises(ValidationError, match="whitespace"):
        ServiceSettings()


def test_an_empty_key_means_no_key_and_a_real_one_is_kept(monkeypatch):
    assert ServiceSettings(api_key="").api_key is None
    monkeypatch.setenv("MAGNETO_API_KEY", "")
    assert ServiceSettings().api_key is None
    assert ServiceSettings(api_key="s3cret key").api_key.get_secret_value() == "s3cret key"


def _serve(checkpoint, *flags: str, env: dict[str, str] | None = None):
    return subprocess.run(
        serve_argv(checkpoint, *flags),
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("flags", "env", "status"),
    [
        (["--api-key", "   "], {}, 2),  # a bad flag is a usage error
        ([], {"MAGNETO_API_KEY": "   "}, 1),
        (["--api-key", " hunter2 "], {}, 2),
        ([], {"MAGNETO_API_KEY": "hunter2\t"}, 1),
    ],
    ids=["flag-blank", "env-blank", "flag-padded", "env-padded"],
)
@pytest.mark.slow
def test_magneto_serve_refuses_a_blank_or_padded_key_in_one_line(checkpoint, flags, env, status):
    result = _serve(checkpoint, "--port", "0", *flags, env=env)
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("magneto serve: error: ") and "api" in lines[0].lower()
    assert "whitespace" in lines[0]
    assert "hunter2" not in result.stderr  # the key is never echoed
    assert "Uvicorn running" not in result.stderr + result.stdout


def test_metrics_require_key_needs_a_key():
    with pytest.raises(ValidationError, match="metrics_require_key needs an api_key"):
        ServiceSettings(metrics_require_key=True)


def test_metrics_are_open_by_default_even_with_a_key(predictor):
    app = create_app(ServiceSettings(api_key=KEY), predictor=predictor)
    with TestClient(app) as client:
        response = client.get("/metrics")
        assert response.status_code == 200 and "magneto_batch_size" in response.text
        assert client.get("/v1/model").status_code == 401  # while /v1 is guarded


def test_metrics_can_require_the_key(predictor):
    settings = ServiceSettings(api_key=KEY, metrics_require_key=True)
    with TestClient(create_app(settings, predictor=predictor)) as client:
        missing = client.get("/metrics")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "missing_api_key"
        assert missing.headers["www-authenticate"] == "ApiKey"
        wrong = client.get("/metrics", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        right = client.get("/metrics", headers={"X-API-Key": KEY})
        assert right.status_code == 200 and "magneto_batch_size" in right.text
        assert client.get("/healthz").status_code == 200  # probes stay open


def test_openapi_declares_the_api_key_scheme_on_every_v1_route():
    schema = create_app(ServiceSettings()).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["APIKeyHeader"]["description"],
    }
    v1 = [
        operation
        for path, item in schema["paths"].items()
        if path.startswith("/v1/")
        for operation in item.values()
    ]
    assert len(v1) >= 4  # summarize, batch, model, vocabulary
    assert all(op["security"] == [{"APIKeyHeader": []}] for op in v1)
    assert all("security" not in op for op in schema["paths"]["/healthz"].values())
