"""A live server in a thread, built as ``magneto serve`` builds it, around a tiny untrained
model: the overload and slow-client tests need real sockets, not a trained checkpoint."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from fastapi import FastAPI
from PIL import Image

from magneto.data.vocabulary import Vocabulary
from magneto.infer.checkpoint import Checkpoint
from magneto.infer.predictor import Predictor
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.service.app import create_app
from magneto.service.server import bind_socket, build_server
from magneto.service.settings import ServiceSettings
from tests.readiness import wait_until_ready

WORDS = ["sky", "clouds", "sun", "water", "beach", "dog", "cat", "tree", "grass", "road"]


def tiny_checkpoint() -> Checkpoint:
    """An untrained small MAGNeto (speed, not quality, matters here)."""
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=len(WORDS), d_model=32, heads=2, d_ff=64, tag_layers=1, image_layers=1
    )
    return Checkpoint(
        model_config=config,
        vocabulary=Vocabulary(WORDS),
        model_state=build_model(config).state_dict(),
        input_size=64,
    )


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


@contextmanager
def serving(settings: ServiceSettings, predictor: Predictor) -> Iterator[tuple[str, FastAPI]]:
    """``(url, app)`` of a server on a free port until the block ends."""
    app = create_app(settings, predictor=predictor)
    server = build_server(settings, app)
    sock = bind_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not wait_until_ready(url, timeout=120, alive=thread.is_alive, interval=0.05):
            raise RuntimeError("the in-thread server did not become ready")
        yield url, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
