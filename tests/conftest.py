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
