"""``magneto export --format onnx --quantize int8``: the exported model with its image trunk
statically quantized (ONNX Runtime QDQ: int8 weights per output channel, uint8 activations
with ranges calibrated on the user's images), the tag streams left in float32.

Why ONNX Runtime and not PyTorch's PT2E flow: on the torch this project supports, PT2E's x86
quantizer lives in torchao and fails on this ResNet trunk, and its int8 kernels need
``torch.compile`` and a C++ toolchain at the user's site; ONNX Runtime's int8 convolutions run
from a wheel on every x86 CPU with VNNI or AMX-INT8 (see docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import magneto.devices as devices
from magneto.data.images import DEFAULT_MAX_PIXELS
from magneto.errors import MagnetoError
from magneto.infer.checkpoint import Checkpoint
from magneto.infer.onnx_io import image_only_nodes, quantize_int8, require
from magneto.infer.runtimes.cache import replace_with
from magneto.infer.runtimes.calibration import Calibration
from magneto.infer.runtimes.candidates import NO_INT8_DOT

QUANTIZATIONS = ("int8",)


def check_quantization(
    quantize: str, fmt: str, checkpoint: Checkpoint, calibration: Calibration | None
) -> None:
    """Everything that rules an int8 export out, said before anything is exported."""
    if quantize not in QUANTIZATIONS:
        raise MagnetoError(f"unknown quantization {quantize!r}; choose one of int8")
    if fmt != "onnx":
        raise MagnetoError("--quantize int8 writes ONNX: pass --format onnx")
    if not checkpoint.model_config.uses_images:
        raise MagnetoError(
            f"--quantize int8 quantizes the image trunk, and this "
            f"{checkpoint.model_config.architecture} model reads no images"
        )
    if calibration is None:
        raise MagnetoError(
            "--quantize int8 needs --calibration FILE_OR_DIR: a few hundred of your images "
            "(e.g. val.csv with --calibration-images DIR) to set the int8 ranges"
        )
    if not devices.cpu_has_int8_dot():
        raise MagnetoError(f"--quantize int8 refused: {NO_INT8_DOT}, so int8 would not pay")
    require(("onnxruntime", "onnx"), "int8 quantization")


def quantize_export(
    path: Path,
    checkpoint: Checkpoint,
    calibration: Calibration,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Quantize the exported model at ``path`` in place; returns the sidecar's description."""
    import onnx

    size = checkpoint.input_size
    used = 0

    def feeds() -> Any:
        nonlocal used
        for batch in calibration.batches(size, max_pixels=max_pixels):
            used += len(batch)
            tags = np.zeros((len(batch), 1), dtype=np.int64)  # the trunk does not read tags
            yield {"images": batch, "tags": tags, "padding_mask": np.zeros_like(tags, bool)}

    replace_with(path, lambda tmp: quantize_int8(path, tmp, feeds()))
    quantized = onnx.load(str(path))
    nodes = sum(node.op_type == "QuantizeLinear" for node in quantized.graph.node)
    return {
        "type": "int8",
        "method": "static, QDQ (ONNX Runtime)",
        "weights": "int8, per output channel",
        "activations": "uint8, ranges calibrated on the images below",
        "scope": "the image trunk (nodes computed from images alone); tag streams float32",
        "trunk_nodes": len(image_only_nodes(quantized, "images")),
        "quantize_nodes": nodes,
        "calibration": {
            "source": str(calibration.source),
            "images": str(calibration.images) if calibration.images else None,
            "items": used,
        },
    }
