"""Runtimes: how the image trunk (the ResNet without its head, ~95 % of inference time) is run.

Each runtime turns a batch of images into the trunk's feature maps; the rest of the model then
runs from those maps in PyTorch, the path the feature cache already takes, so every runtime
keeps the model's own code, its explanations and its outlier views:

- ``float32``: PyTorch eager, the reference;
- ``bf16``: PyTorch, bf16 with channels_last on a CPU (fast where the CPU has native bf16),
  the whole model under bf16 autocast on CUDA;
- ``onnx``: ONNX Runtime, float32, on the trunk exported with ``torch.onnx.export(dynamo=True)``;
- ``int8``: ONNX Runtime on the same export, statically quantized (QDQ, per-channel int8
  weights, uint8 activations) with ranges calibrated on the user's own images; CPUs with VNNI
  or AMX-INT8 only.

``auto`` times the candidates this machine can run on the caller's batch size, keeps those whose
keep/drop decisions agree with float32's, and picks the fastest (:mod:`.choose`); the choice is
cached per machine and checkpoint (:mod:`.cache`).
"""

from __future__ import annotations

import importlib
from typing import Any

from magneto.infer.runtimes.names import RUNTIME_CHOICES, RUNTIMES

_EXPORTS = {
    "Calibration": "magneto.infer.runtimes.calibration",
    "RuntimeChoice": "magneto.infer.runtimes.choose",
    "choose_runtime": "magneto.infer.runtimes.choose",
    "RuntimeUnavailable": "magneto.infer.runtimes.trunks",
    "TrunkRuntime": "magneto.infer.runtimes.trunks",
}

__all__ = ["RUNTIMES", "RUNTIME_CHOICES", *_EXPORTS]


def __getattr__(name: str) -> Any:  # lazy (PEP 562): importing the names needs no torch
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
