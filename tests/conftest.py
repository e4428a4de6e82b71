"""Shared fixtures: small vocabularies, annotation files and images made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
torch.set_num_threads(2)


def pytest_configure(config: pytest.Config) -> None:
    """The runtime cache (exported and int8 trunks, auto choices) of this test session only,
    shared by its tests and the processes they start, never the user's ~/.cache."""
    if "MAGNETO_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["MAGNETO_CACHE_DIR"] = tempfile.mkdtemp(prefix="magneto-test-cache-")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are collected everywhere and skipped, saying why, without a GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


WORDS = ["sky", "clouds", "sun", "water", "beach", "dog", "cat", "tree", "grass", "road"]


@pytest.fixture
def words() -> list[str]:
    return list(WORDS)


def write_jpeg(path: Path, size: tuple[int, int] = (64, 48), color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")
    return path


def write_truncated_jpeg(path: Path) -> Path:
    write_jpeg(path, (96, 96))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A small synthetic NUS-WIDE, prepared: (prepared dir, image dir)."""
    from magneto.sources.nuswide import prepare_nuswide
    from magneto.sources.synthetic.generator import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny")
    generate(SynthConfig(items=64, unlabeled=16, seed=1, image_size=64), root / "raw")
    prepare_nuswide(root / "raw", root / "prepared")
    return root / "prepared", root / "raw" / "Flickr"


def tiny_config(data, images, out, **overrides):
    """A fast run config over ``tiny_data`` (small model, 64 px, CPU, no progress bars)."""
    from magneto.config import RunConfig
    from magneto.model.config import ModelConfig

    model = ModelConfig(
        d_model=32,
        heads=2,
        d_ff=64,
        tag_layers=1,
        image_layers=1,
        dropout=0.1,
        backbone_weights=None,  # a random trunk, asked for: the tiny data is synthetic
    )
    base = dict(
        model=model,
        data=str(data),
        images=str(images),
        out=str(out),
        input_size=64,
        epochs=2,
        batch_size=8,
        eval_batch_size=16,
        workers=0,
        progress=False,
        augment_images=False,
        lr=0.05,
        pretrain_epochs=1,
    )
    base.update(overrides)
    return RunConfig(**base)


def config_flags(data, images, out, *extra: str) -> list[str]:
    """Command-line flags equivalent to ``tiny_config``."""
    return [
        "--data",
        str(data),
        "--images",
        str(images),
        "--out",
        str(out),
        "--input-size",
        "64",
        "--d-model",
        "32",
        "--heads",
        "2",
        "--d-ff",
        "64",
        "--tag-layers",
        "1",
        "--image-layers",
        "1",
        "--dropout",
        "0.1",
        "--batch-size",
        "8",
        "--eval-batch-size",
        "16",
        "--workers",
        "0",
        "--no-progress",
        "--no-augment-images",
        "--lr",
        "0.05",
        "--backbone-weights",
        "none",
        *extra,
    ]


@pytest.fixture(scope="session")
def checkpoint(tiny_data, tmp_path_factory):
    """A checkpoint trained for two epochs on ``tiny_data`` (what the service tests serve)."""
    from magneto.training import run_training

    data, images = tiny_data
    out = tmp_path_factory.mktemp("served") / "run"
    run_training(tiny_config(data, images, out, epochs=2))
    return out / "best_f1.ckpt"


def strip_png(width: int, height: int) -> bytes:
    """A tiny PNG of a huge, thin 8-bit grey image (a 1,000,000x1 one is about 1 KB): the
    aspect-ratio bomb, built by hand so that making it costs nothing."""
    import struct
    import zlib

    rows = b"".join(b"\x00" + b"\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
