"""What one model can run its trunk on, on one device: each runtime built on demand, or the one
line that says why it cannot run here."""

from __future__ import annotations

import torch

import magneto.devices as devices
from magneto.data.images import DEFAULT_MAX_PIXELS
from magneto.infer.onnx_io import INSTALL_HINT, can_export, has_onnxruntime
from magneto.infer.runtimes.cache import RuntimeCache, trunk_digest
from magneto.infer.runtimes.calibration import Calibration
from magneto.infer.runtimes.onnx_trunk import (
    OrtTrunk,
    cached_int8,
    exported_trunk,
    quantized_trunk,
)
from magneto.infer.runtimes.trunks import EagerTrunk, TrunkRuntime
from magneto.model.architectures import TagModel

CHECK_ITEMS = 64  # images the agreement with float32 is measured on

NO_INT8_DOT = "this CPU has no int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX-INT8)"


def machine_problem(name: str, device: torch.device) -> str | None:
    """Why this machine and installation cannot run ``name`` on ``device``, whatever the
    model (None: they can). Cheap: a service checks a forced runtime with it before it
    starts."""
    cpu = device.type == "cpu"
    if name == "bf16" and cpu and not devices.cpu_has_native_bf16():
        return "no native bf16 on this CPU (emulated bf16 is slower than float32)"
    if name in ("onnx", "int8"):
        if not cpu:
            return f"{name} runs on the CPU"
        if not has_onnxruntime():
            return f"onnxruntime is not installed ({INSTALL_HINT})"
    if name == "int8" and not devices.cpu_has_int8_dot():
        return NO_INT8_DOT
    return None


class Candidates:
    """The runtimes of ``model`` on ``device``; exports and int8 trunks go to its cache."""

    def __init__(
        self,
        model: TagModel,
        device: torch.device,
        input_size: int,
        calibration: Calibration | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.model = model
        self.device = device
        self.input_size = input_size
        self.calibration = calibration
        self.max_pixels = max_pixels
        self._cache: RuntimeCache | None = None

    @property
    def cache(self) -> RuntimeCache:
        if self._cache is None:
            trunk = self.model.image_extractor.trunk
            self._cache = RuntimeCache(trunk_digest(trunk, self.input_size))
        return self._cache

    def unavailable(self, name: str) -> str | None:
        """Why ``name`` cannot run here (None: it can)."""
        problem = machine_problem(name, self.device)
        if problem is not None or name not in ("onnx", "int8"):
            return problem
        if not (can_export() or self.cache.float_onnx.is_file()):
            return f"the ONNX exporter's packages are not installed ({INSTALL_HINT})"
        if name == "int8" and self.calibration is None and cached_int8(self.cache) is None:
            return (
                "no calibration yet: pass --calibration FILE_OR_FOLDER once (a few hundred "
                "of your images; the int8 trunk is then cached)"
            )
        return None

    def int8_identity(self) -> str | None:
        """Which int8 trunk ``build("int8")`` gives: the calibration's, else the cached one."""
        if self.calibration is not None:
            return self.calibration.identity(self.input_size)
        found = cached_int8(self.cache)
        return found.name if found is not None else None

    def build(self, name: str) -> TrunkRuntime:
        extractor = self.model.image_extractor
        if name in ("float32", "bf16"):
            return EagerTrunk(extractor, self.device, bf16=name == "bf16")
        float_path = exported_trunk(extractor.trunk, self.input_size, self.cache)
        if name == "onnx":
            return OrtTrunk(float_path, "onnx")
        if self.calibration is not None:
            path = quantized_trunk(
                float_path, self.cache, self.calibration, self.input_size, self.max_pixels
            )
        else:
            found = cached_int8(self.cache)
            if found is None:
                raise RuntimeError("no int8 trunk in the cache and no calibration to make one")
            path = found
        return OrtTrunk(path, "int8")

    def check_images(self) -> torch.Tensor:
        """What agreement is measured on: calibration images, else seeded noise."""
        if self.calibration is not None:
            batches = self.calibration.batches(self.input_size, CHECK_ITEMS, self.max_pixels)
            return torch.from_numpy(next(iter(batches)))
        generator = torch.Generator().manual_seed(0)
        size = self.input_size
        return torch.randn(CHECK_ITEMS // 2, 3, size, size, generator=generator)
