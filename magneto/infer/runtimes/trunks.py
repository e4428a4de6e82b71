"""The eager runtimes (``float32``, ``bf16``) and what every runtime is: images in, the trunk's
feature maps ``(B, C, H', W')`` out, float32, on the model's device."""

from __future__ import annotations

import copy
from typing import Protocol

import torch

from magneto.errors import MagnetoError
from magneto.infer.runtimes.names import RUNTIME_CHOICES, RUNTIMES
from magneto.model.backbone import ImageFeatureExtractor

__all__ = [
    "RUNTIMES",
    "RUNTIME_CHOICES",
    "EagerTrunk",
    "RuntimeUnavailable",
    "TrunkRuntime",
    "model_amp",
]


class RuntimeUnavailable(MagnetoError):
    """A runtime was asked for that this machine, model or installation cannot run."""


class TrunkRuntime(Protocol):
    """Runs the image trunk; ``name`` is one of :data:`RUNTIMES`."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def model_amp(runtime: str, device: torch.device) -> str:
    """The ``amp`` mode the rest of the model runs under with ``runtime`` on ``device``: bf16
    on CUDA runs the whole model under autocast; elsewhere only the trunk changes."""
    return "bf16" if runtime == "bf16" and device.type == "cuda" else "off"


class EagerTrunk:
    """The trunk in PyTorch: float32, or bf16 (channels_last on a CPU, autocast on CUDA).

    The bf16 CPU trunk is a channels_last copy, so that the model's own float32 trunk (the
    reference the others are checked against) is left as it was.
    """

    def __init__(self, extractor: ImageFeatureExtractor, device: torch.device, bf16: bool):
        self.name = "bf16" if bf16 else "float32"
        self.device = device
        self.bf16 = bf16
        self.trunk = extractor.trunk
        if bf16 and device.type == "cpu":
            self.trunk = copy.deepcopy(extractor.trunk).to(memory_format=torch.channels_last)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.bf16:
            return self.trunk(images)
        if self.device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self.trunk(images).float()
