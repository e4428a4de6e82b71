"""Self-describing checkpoints: the only thing that crosses from training to serving.

A checkpoint is a plain ``dict`` of tensors, numbers, strings, lists and dicts, saved with
``torch.save`` and always loaded with ``weights_only=True``, so loading never unpickles
arbitrary objects. It carries everything needed to use the model: the model config, the
vocabulary, the input size, the decision threshold and the metrics it was chosen on. Writes
go to a temporary file that is renamed into place, so a crash never leaves a broken file.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magneto.errors import MagnetoError
from magneto.model import TagModel, build_model
from magneto.model.config import ModelConfig
from magneto.runtime import speed_up_backbone
from magneto.vocabulary import Vocabulary

FORMAT = "magneto-checkpoint"
VERSION = 1


class CheckpointError(MagnetoError):
    """A checkpoint file is missing, unreadable or not a MAGNeto checkpoint."""


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
        return payload


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


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely (``weights_only``) and check that it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a MAGNeto checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}, "
            f"this MAGNeto reads version {VERSION}"
        )
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
