"""``magneto serve`` on a port already in use: one line and status 1, before the model loads
(it used to load the model, say ready, then die with Errno 98)."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from magneto.infer.checkpoint import save_checkpoint
from tests.service.conftest import REPO, serve_argv
from tests.service.live_server import tiny_checkpoint

pytestmark = pytest.mark.slow  # starts servers, subprocesses or training runs


def serve_on(port: int, checkpoint) -> subprocess.CompletedProcess:
    return subprocess.run(
        serve_argv(checkpoint, "--port", str(port), "--device", "cpu"),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("kind", ["working", "unreadable"])
def test_a_taken_port_is_one_line_and_status_1_before_the_model_loads(tmp_path, kind):
    if kind == "working":
        checkpoint = save_checkpoint(tiny_checkpoint(), tmp_path / "tiny.ckpt")
    else:  # had the checkpoint been read first, this would be the error reported
        checkpoint = tmp_path / "garbage.ckpt"
        checkpoint.write_bytes(b"not a checkpoint at all")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_on(port, checkpoint)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("magneto serve: error: ")
    assert f"port {port}" in lines[0] and "already in use" in lines[0]
    output = result.stderr + result.stdout
    assert "ready:" not in output and "Application startup" not in output  # never got that far
