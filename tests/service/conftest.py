"""A real server (``magneto serve`` in a subprocess) with a checkpoint trained on tiny data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.readiness import wait_until_ready

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key-123"
LIMITS = {  # small limits, set the way operators set them: environment variables
    "MAGNETO_MAX_BODY_BYTES": "300000",
    "MAGNETO_MAX_PIXELS": "250000",
    "MAGNETO_MAX_TAGS": "20",
    "MAGNETO_MAX_TAG_LENGTH": "40",
    "MAGNETO_MAX_BATCH_ITEMS": "8",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_argv(checkpoint: Path, *flags: str) -> list[str]:
    """The command line of ``magneto serve`` from this checkout, as the tests run it."""
    command = [sys.executable, "-m", "magneto.cli.main", "serve"]
    return [*command, "--checkpoint", str(checkpoint), *flags]


def start_server(checkpoint: Path, *flags: str, env: dict[str, str] | None = None):
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", **(env or {})}
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (outlives this call: stop_server closes it)
    proc = subprocess.Popen(
        serve_argv(checkpoint, "--port", str(port), *flags),
        env=full_env,
        # A file, not a pipe: nothing reads a pipe until the server stops, and a full pipe
        # (~460 access-log lines) would block the server mid-request.
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    proc.log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    if wait_until_ready(url, timeout=90, alive=lambda: proc.poll() is None):
        return proc, url
    if proc.poll() is not None:
        log.seek(0)
        raise RuntimeError(f"server exited: {log.read()[-2000:]}")
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop_server(proc: subprocess.Popen) -> tuple[int, str]:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log = proc.log  # type: ignore[attr-defined]
    log.seek(0)
    err = log.read()
    log.close()
    return proc.returncode, err


@pytest.fixture(scope="session")
def server(checkpoint):
    proc, url = start_server(checkpoint, "--api-key", API_KEY, env=LIMITS)
    yield url
    stop_server(proc)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c


def pytest_collection_modifyitems(items):
    """A test that talks to the session's server process starts it: slow, like the others."""
    for item in items:
        if {"server", "client"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
