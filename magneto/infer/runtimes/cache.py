"""Where runtimes keep what is slow to make: the exported trunk, its int8 versions and the
``auto`` choice, per trunk and machine, so that a second start-up costs a file read.

``MAGNETO_CACHE_DIR``, else ``$XDG_CACHE_HOME/magneto``, else ``~/.cache/magneto``. Files are
written to a temporary name and renamed, so processes that start together (bulk workers, Ray
actors, service replicas) never read half a file; the worst case is that both do the work. A
cache that cannot be written (read-only image) is replaced by a temporary one for the process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def cache_root() -> Path:
    if os.environ.get("MAGNETO_CACHE_DIR"):
        return Path(os.environ["MAGNETO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "magneto"


def trunk_digest(trunk: torch.nn.Module, input_size: int) -> str:
    """What an exported trunk depends on: its weights and the input size. Checkpoints that
    share a (frozen) trunk share its exports."""
    digest = hashlib.sha256(f"input_size={input_size}\0".encode())
    for name, tensor in sorted(trunk.state_dict().items()):
        raw = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{raw.dtype}\0{tuple(raw.shape)}\0".encode())
        digest.update(raw.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def replace_with(path: Path, make: Callable[[Path], object]) -> Path:
    """``make(tmp)`` writes the file; it appears under ``path`` only when complete."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        make(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class RuntimeCache:
    """One trunk's folder: ``trunk.float32.onnx``, ``trunk.int8.<calibration>.onnx``,
    ``int8.json`` (the latest int8 model and how it was calibrated) and ``choice.<key>.json``."""

    def __init__(self, digest: str, root: Path | None = None) -> None:
        self.digest = digest
        self.dir = (root or cache_root()) / "runtimes" / digest[:24]
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / f".probe.{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            fallback = Path(tempfile.mkdtemp(prefix="magneto-runtimes-"))
            log.warning("cache %s is not writable (%s); using %s", self.dir, exc, fallback)
            self.dir = fallback

    @property
    def float_onnx(self) -> Path:
        return self.dir / "trunk.float32.onnx"

    def int8_onnx(self, calibration_id: str) -> Path:
        return self.dir / f"trunk.int8.{calibration_id[:16]}.onnx"

    @property
    def latest_int8(self) -> Path:
        return self.dir / "int8.json"

    def choice(self, key: str) -> Path:
        return self.dir / f"choice.{key[:20]}.json"

    def read_json(self, path: Path) -> dict[str, Any] | None:
        """The file's object, or None when it is missing or unreadable (then it is redone)."""
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def write_json(self, path: Path, value: dict[str, Any]) -> None:
        text = json.dumps(value, indent=2, sort_keys=True) + "\n"
        replace_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
