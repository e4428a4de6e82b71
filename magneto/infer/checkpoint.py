"""Self-describing checkpoints: the only thing that crosses from training to serving.

A checkpoint is a plain ``dict`` of tensors, numbers, strings, lists and dicts, saved with
``torch.save`` and always loaded with ``weights_only=True``, so loading never unpickles
arbitrary objects. It carries everything needed to use the model: the model config, the
vocabulary, the input size, the decision threshold and the metrics it was chosen on. Writes
go to a temporary file that is renamed into place, so a crash never leaves a broken file.

Integrity: torch does not check the zip's CRCs, so flipped bytes in a tensor load silently.
Every checkpoint therefore stores a SHA-256 over all of its tensors (model weights, optimizer,
scheduler and RNG state; see :func:`tensor_digest`) and every load recomputes it; a mismatch
is a :class:`CorruptCheckpointError`. Epoch numbers are 1-based, as users read them: the
``epoch`` of ``metrics`` is the epoch the weights come from, and ``training_state["epoch"]``
the number of epochs done.

Versions: 2 is the current format. Version 1 files (written before digests and with 0-based
epochs) still load, with a logged warning that they cannot be checked for corruption; their
epoch numbers are converted to 1-based on load. A version-2 file without a digest is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magneto.data.text_files import file_problem
from magneto.data.vocabulary import Vocabulary
from magneto.errors import MagnetoError, refusal
from magneto.model.architectures import TagModel, build_model, speed_up_backbone
from magneto.model.config import ModelConfig

log = logging.getLogger(__name__)

FORMAT = "magneto-checkpoint"
VERSION = 2
LEGACY_VERSION = 1  # no tensor digest, 0-based epochs
DIGEST_KEY = "tensor_sha256"


class CheckpointError(MagnetoError):
    """A checkpoint file is missing, unreadable or not a MAGNeto checkpoint."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's tensors differ from what was written (bit rot, a bad copy, tampering)."""


@dataclass
class Checkpoint:
    """What a checkpoint holds. ``training_state`` is only present where a run can resume."""

    model_config: ModelConfig
    vocabulary: Vocabulary
    model_state: dict[str, torch.Tensor]
    input_size: int = 112
    threshold: float = 0.5
    stage: str = "train"
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the run's resolved config
    training_state: dict[str, Any] | None = None

    def to_payload(self) -> dict[str, Any]:
        """The dict that is saved, with the digest of its tensors."""
        payload: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "stage": self.stage,
            "model_config": self.model_config.model_dump(),
            "vocabulary": self.vocabulary.words,
            "input_size": self.input_size,
            "threshold": float(self.threshold),
            "metrics": self.metrics,
            "config": self.config,
            "model_state": self.model_state,
        }
        if self.training_state is not None:
            payload["training_state"] = self.training_state
        payload[DIGEST_KEY] = tensor_digest(payload)
        return payload


def _tensors(value: Any, path: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor under ``value`` with its path, in an order fixed by keys and positions."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            if path == "" and key == DIGEST_KEY:
                continue
            yield from _tensors(value[key], f"{path}/{key!r}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{path}/{i}")


def tensor_digest(payload: dict[str, Any]) -> str:
    """SHA-256 over each tensor's path, dtype, shape and raw bytes, in a fixed order.

    Covers every tensor of the payload: the model weights and, in resumable checkpoints, the
    optimizer, scheduler and RNG states. Values are hashed as stored (after ``.cpu()``), so
    the digest does not depend on where a file is loaded.
    """
    digest = hashlib.sha256()
    for path, tensor in _tensors(payload, ""):
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        digest.update(f"{path}\0{tensor.dtype}\0{tuple(tensor.shape)}\0{raw.size}\0".encode())
        digest.update(raw.tobytes())
    return digest.hexdigest()


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same directory, flushed, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            torch.save(checkpoint.to_payload(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _upgrade_legacy(path: Path, payload: dict[str, Any]) -> None:
    """A version-1 payload in today's terms: 1-based epochs; warn that it is unchecked."""
    log.warning(
        "%s predates checkpoint digests (version 1): it cannot be checked for corruption",
        path,
    )
    metrics = payload.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("epoch"), int):
        metrics["epoch"] += 1
    state = payload.get("training_state")
    if isinstance(state, dict) and isinstance(state.get("epoch"), int):
        state["epoch"] += 1  # the last finished epoch, 0-based, is the count of epochs done
        for record in state.get("history") or []:
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                record["epoch"] += 1


def _verify(path: Path, payload: dict[str, Any]) -> None:
    """Recompute the tensor digest; version 1 files have none and are only upgraded."""
    stored = payload.pop(DIGEST_KEY, None)
    if payload.get("version") == LEGACY_VERSION:
        _upgrade_legacy(path, payload)
        return
    if not isinstance(stored, str):
        raise CorruptCheckpointError(
            f"{path} is corrupt: it lacks the tensor digest every version-{VERSION} "
            "checkpoint stores"
        )
    if tensor_digest(payload) != stored:
        raise CorruptCheckpointError(
            f"{path} is corrupt: its tensors do not match the digest stored when it was written"
        )


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely (``weights_only``), check that it is one of ours and that its
    tensors are the ones written (every command that reads a checkpoint comes here)."""
    path = Path(path)
    problem = file_problem(path)
    if problem == "not found":
        raise CheckpointError(f"checkpoint not found: {path}")
    if problem:
        raise CheckpointError(f"checkpoint {path} {problem}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise CheckpointError(refusal(path, exc, "checkpoint")) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a MAGNeto checkpoint")
    if payload.get("version") not in (LEGACY_VERSION, VERSION):
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}, "
            f"this MAGNeto reads versions {LEGACY_VERSION} and {VERSION}"
        )
    _verify(path, payload)
    try:
        return Checkpoint(
            model_config=ModelConfig(**payload["model_config"]),
            vocabulary=Vocabulary(payload["vocabulary"]),
            model_state=payload["model_state"],
            input_size=int(payload.get("input_size", 112)),
            threshold=float(payload.get("threshold", 0.5)),
            stage=str(payload.get("stage", "train")),
            metrics=dict(payload.get("metrics") or {}),
            config=dict(payload.get("config") or {}),
            training_state=payload.get("training_state"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged: {exc}".splitlines()[0]) from None


def model_from_checkpoint(
    checkpoint: Checkpoint, device: torch.device | str = "cpu", amp: str = "auto"
) -> TagModel:
    """The checkpoint's network with its weights, on ``device``, in eval mode, ready to score.

    The backbone is built without pretrained weights: the checkpoint holds the trained ones.
    ``amp="auto"`` on a CPU with native bf16 runs the backbone in bf16 (``--amp off``: never).
    """
    config = checkpoint.model_config.model_copy(update={"backbone_weights": None})
    model = build_model(config)
    model.load_state_dict(checkpoint.model_state)
    device = torch.device(device)
    speed_up_backbone(model, device, amp)
    return model.to(device).eval()
