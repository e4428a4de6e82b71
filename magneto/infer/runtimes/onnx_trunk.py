"""The ONNX Runtime trunks (``onnx``, ``int8``): the trunk exported once per trunk and kept in
the cache, and its int8 versions, one per calibration set."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from magneto.data.images import DEFAULT_MAX_PIXELS
from magneto.infer.onnx_io import export_onnx, quantize_int8, session
from magneto.infer.runtimes.cache import RuntimeCache, replace_with
from magneto.infer.runtimes.calibration import Calibration


class OrtTrunk:
    """An exported trunk in an ONNX Runtime session (CPU): images in, feature maps out."""

    def __init__(self, path: Path, name: str, threads: int | None = None) -> None:
        self.name = name
        self.path = path
        self.session = session(path, threads)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        feeds = {"images": images.detach().to("cpu", torch.float32).contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def exported_trunk(trunk: nn.Module, input_size: int, cache: RuntimeCache) -> Path:
    """The float32 ONNX trunk (dynamic batch size), exported on first use."""
    if cache.float_onnx.is_file():
        return cache.float_onnx
    example = (torch.zeros(2, 3, input_size, input_size),)

    def make(tmp: Path) -> None:
        export_onnx(
            trunk,
            example,
            tmp,
            input_names=["images"],
            output_names=["features"],
            dynamic_shapes=({0: "batch"},),
        )

    return replace_with(cache.float_onnx, make)


def quantized_trunk(
    float_path: Path,
    cache: RuntimeCache,
    calibration: Calibration,
    input_size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """The int8 trunk calibrated on ``calibration`` (made once per calibration set), recorded
    as the latest int8 trunk so later start-ups find it without the images."""
    identity = calibration.identity(input_size)
    path = cache.int8_onnx(identity)
    if not path.is_file():
        feeds = (
            {"images": batch} for batch in calibration.batches(input_size, max_pixels=max_pixels)
        )
        replace_with(path, lambda tmp: quantize_int8(float_path, tmp, feeds))
    cache.write_json(
        cache.latest_int8,
        {
            "file": path.name,
            "calibration": {
                "source": str(calibration.source.resolve()),
                "images": str(calibration.images.resolve()) if calibration.images else None,
                "items": calibration.items,
                "identity": identity,
            },
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return path


def cached_int8(cache: RuntimeCache) -> Path | None:
    """The latest int8 trunk made for this trunk, if its file is still there."""
    record = cache.read_json(cache.latest_int8)
    if record is None or not isinstance(record.get("file"), str):
        return None
    path = cache.dir / Path(record["file"]).name
    return path if path.is_file() else None
