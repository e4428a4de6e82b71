"""The images int8 ranges are calibrated on: a few hundred of the user's own, read from an
annotation file (CSV, JSONL or Parquet with an ``image`` column: ``train.csv``, ``val.csv``, a
``prepare own`` input) or from a folder, decoded and resized exactly as inference does."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from magneto.data.annotation_files import iter_annotations
from magneto.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_image, make_transform
from magneto.errors import ImageError, MagnetoError

DEFAULT_ITEMS = 256


@dataclass(frozen=True)
class Calibration:
    """``source``: an annotation file or a folder of images; ``images``: the folder the file's
    relative image paths start from (default: the file's own folder); ``items``: how many
    images (the first ones the source names; unreadable ones are skipped, not replaced)."""

    source: Path
    images: Path | None = None
    items: int = DEFAULT_ITEMS

    def __post_init__(self) -> None:
        if self.items < 1:
            raise MagnetoError("--calibration-items must be at least 1")
        if not self.source.exists():
            raise MagnetoError(f"calibration source not found: {self.source}")
        if self.images is not None and not self.images.is_dir():
            raise MagnetoError(f"calibration image folder not found: {self.images}")

    def image_paths(self) -> list[Path]:
        if self.source.is_dir():
            found = (
                p
                for p in sorted(self.source.rglob("*"))
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            paths = list(itertools.islice(found, self.items))
        else:
            root = self.images or self.source.parent
            named = (
                root / record.image
                for _, record in iter_annotations(self.source, require_labels=False)
                if record.image
            )
            paths = list(itertools.islice(named, self.items))
        if not paths:
            raise MagnetoError(f"{self.source} names no images to calibrate on")
        return paths

    def identity(self, input_size: int) -> str:
        """Changes when the images (path, size, modification time) or the input size do."""
        digest = hashlib.sha256(f"{input_size}\0".encode())
        for path in self.image_paths():
            try:
                stat = path.stat()
                digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            except OSError:
                digest.update(f"{path}\0missing\0".encode())
        return digest.hexdigest()

    def batches(
        self, input_size: int, batch_size: int = 16, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> Iterator[np.ndarray]:
        """``(B, 3, S, S)`` float32 batches, preprocessed as for inference."""
        transform = make_transform(input_size, train=False)
        batch: list[np.ndarray] = []
        decoded = 0
        for path in self.image_paths():
            try:
                array = decode_image(path, max_pixels=max_pixels, min_side=input_size)
            except (ImageError, OSError):
                continue
            batch.append(transform(array).numpy())
            decoded += 1
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
        if not decoded:
            raise MagnetoError(f"none of the images {self.source} names could be read")
