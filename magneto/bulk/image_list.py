"""Images named on a command line (files, folders, glob patterns) as a bulk-job manifest, so
that scoring a folder takes the same path as ``magneto summarize``: decoding in worker
processes, padded batches, one result row per image."""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from pathlib import Path

from magneto.data.images import IMAGE_SUFFIXES
from magneto.errors import MagnetoError

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")


def is_manifest(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MANIFEST_SUFFIXES


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def expand_images(inputs: Sequence[str]) -> list[Path]:
    """Every image the inputs name, in order, each once: a file as given, a folder's images
    (recursively, sorted), a glob pattern's matches (sorted; ``**`` spans folders)."""
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if _is_image(p))
            if not matches:
                raise MagnetoError(
                    f"{path}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})"
                )
        elif any(c in text for c in "*?["):
            matches = sorted(p for p in map(Path, glob.glob(text, recursive=True)) if _is_image(p))
            if not matches:
                raise MagnetoError(f"{text}: no image matches this pattern")
        elif path.exists():
            matches = [path]  # a file named explicitly is tried whatever its suffix
        else:
            raise MagnetoError(f"{path}: no such file, folder or pattern")
        found.extend(matches)
    return list(dict.fromkeys(found))


def write_image_manifest(images: Sequence[Path], tags: Sequence[str], path: Path) -> Path:
    """A JSONL manifest of ``images`` (the same ``tags`` for each, ids = the paths as given)
    whose image paths are relative to the returned root, ``/``."""
    with path.open("w", encoding="utf-8") as handle:
        for image in images:
            relative = str(image.resolve()).lstrip("/")
            row = {"item_id": str(image), "tags": list(tags), "image": relative}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path("/")
