"""Shutdown, overload, CORS, settings and start-up errors."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from magneto.cli.main import main
from magneto.data.annotation_files import read_annotations
from magneto.infer.predictor import Predictor
from magneto.service.app import create_app
from magneto.service.settings import ServiceSettings
from tests.readiness import wait_until_ready
from tests.service.conftest import free_port, start_server


@pytest.fixture(scope="module")
def sample(tiny_data):
    data, images = tiny_data
    record = read_annotations(data / "train.csv")[6]
    return (images / record.image_path).read_bytes(), ",".join(record.tags)


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests(checkpoint, sample):
    proc, url = start_server(checkpoint)
    raw, tags = sample

    async def fire():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            tasks = [
                asyncio.create_task(
                    client.post(
                        "/v1/summarize", files={"image": ("a.jpg", raw)}, data={"tags": tags}
                    )
                )
                for _ in range(12)
            ]
            await asyncio.sleep(0.15)  # connected and in flight
            proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 12
    code = proc.wait(timeout=30)
    proc.log.seek(0)
    err = proc.log.read()
    # uvicorn re-raises the signal once shutdown is complete: exit by SIGTERM (143 in a shell).
    assert code in (0, -signal.SIGTERM)
    assert "Waiting for application shutdown" in err and "Finished server process" in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz", timeout=2)


class SlowPredictor(Predictor):
    """A real predictor whose forward pass takes a while, to fill the queue."""

    def score_prepared(self, items):
        time.sleep(0.3)
        return super().score_prepared(items)


def _serve_in_thread(app) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    if wait_until_ready(url, timeout=30, alive=thread.is_alive, interval=0.1):
        return server, url
    raise RuntimeError("in-process server did not start")


@pytest.mark.slow
def test_a_full_queue_answers_503_and_the_rest_are_served(checkpoint, sample):
    from magneto.infer.checkpoint import load_checkpoint

    predictor = SlowPredictor(load_checkpoint(checkpoint), device="cpu")
    settings = ServiceSettings(max_queue=2, max_batch_size=1, max_wait_ms=0)
    server, url = _serve_in_thread(create_app(settings, predictor=predictor))
    raw, tags = sample
    try:

        async def fire():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                return await asyncio.gather(
                    *[
                        client.post(
                            "/v1/summarize", files={"image": ("a.jpg", raw)}, data={"tags": tags}
                        )
                        for _ in range(8)
                    ]
                )

        responses = asyncio.run(fire())
    finally:
        server.should_exit = True
    statuses = sorted(r.status_code for r in responses)
    assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}
    busy = next(r for r in responses if r.status_code == 503).json()
    assert busy["error"]["code"] == "overloaded"


def test_cors_is_off_unless_configured(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    origin = {"Origin": "https://photos.example.com"}
    with TestClient(create_app(ServiceSettings(), predictor=predictor)) as client:
        assert "access-control-allow-origin" not in client.get("/healthz", headers=origin).headers
    allowed = ServiceSettings(cors_origins="https://photos.example.com")
    with TestClient(create_app(allowed, predictor=predictor)) as client:
        response = client.get("/healthz", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://photos.example.com"


def test_settings_come_from_environment_and_flags_win(monkeypatch, checkpoint):
    monkeypatch.setenv("MAGNETO_API_KEY", "from-env")
    monkeypatch.setenv("MAGNETO_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("MAGNETO_CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("MAGNETO_CHECKPOINT", str(checkpoint))
    settings = ServiceSettings()
    assert settings.api_key.get_secret_value() == "from-env"
    assert settings.max_batch_size == 7 and settings.checkpoint == checkpoint
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert "from-env" not in repr(settings)  # the key is never printed
    assert ServiceSettings(max_batch_size=3).max_batch_size == 3


def test_the_model_is_warm_before_ready(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    app = create_app(ServiceSettings(), predictor=predictor)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
        count = next(
            line for line in metrics.splitlines() if line.startswith("magneto_batch_size_count")
        )
        assert float(count.split()[-1]) >= 1.0  # the warm-up forward pass


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["serve", "--checkpoint", "missing.ckpt"], 1, "checkpoint not found: missing.ckpt"),
        # usage errors: status 2, like argparse's own
        (["serve"], 2, "no checkpoint: pass --checkpoint or set MAGNETO_CHECKPOINT"),
        (["serve", "--checkpoint", "x.ckpt", "--port", "http"], 2, "argument --port"),
        (["serve", "--checkpoint", "x.ckpt", "--max-batch-size", "0"], 2, "--max-batch-size"),
    ],
)
def test_serve_start_up_errors_are_one_line(argv, code, fragment, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAGNETO_CHECKPOINT", raising=False)
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    assert status == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_the_runtime_is_described_and_counted(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNETO_CACHE_DIR", str(tmp_path / "cache"))
    for runtime, source in (("onnx", "forced"), ("auto", "measured")):
        settings = ServiceSettings(
            checkpoint=checkpoint, device="cpu", runtime=runtime, max_batch_size=4
        )
        with TestClient(create_app(settings)) as client:
            described = client.get("/v1/model").json()["runtime"]
            metrics = client.get("/metrics").text
        name = described["name"]
        assert described["requested"] == runtime and described["source"] == source
        label = f'magneto_runtime_info{{requested="{runtime}",runtime="{name}",source="{source}"}}'
        assert f"{label} 1.0" in metrics
    assert described["batch_size"] == 4 and "float32" in described["timings_ms"]
    assert f'magneto_runtime_batch_ms{{runtime="{name}"}}' in metrics


def test_serve_refuses_a_runtime_this_machine_cannot_run(checkpoint, capsys, monkeypatch):
    import magneto.devices as devices

    monkeypatch.setattr(devices, "cpu_has_int8_dot", lambda: False)
    argv = ["serve", "--checkpoint", str(checkpoint), "--port", "0", "--runtime", "int8"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--runtime int8 cannot run here" in err, err
    assert main([*argv[:-2], "--calibration", "missing.csv"]) == 1
    assert "calibration source not found" in capsys.readouterr().err
