"""Devices, mixed precision, seeding, RNG state and torch.distributed helpers.

Kept in one place so that the training and pre-training stages, the benchmarks and the
predictor agree on what ``--device auto`` means and on how a run is made reproducible.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from magneto.errors import ConfigError, MagnetoError


def check_device(name: str) -> str:
    """``auto`` or a device name torch understands, so a typo fails at once, not mid-run.

    Whether the device is present (CUDA on a CPU-only host) is checked when the run starts.
    """
    text = str(name).strip()
    if text == "auto":
        return text
    try:
        torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError("not a device name; use auto, cpu, cuda or cuda:N") from None
    return text


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU. A requested but absent CUDA is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MagnetoError(f"device {name!r} was requested but CUDA is not available here")
    return device


INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in hardware
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", *BF16_FLAGS, "amx_int8")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.split(":", 1)[-1].split())


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_cpu() -> str:
    """The CPU and the flags that decide which inference path pays, for logs and reports."""
    present = [f for f in REPORTED_FLAGS if f in cpu_flags()] or ["none of the reported flags"]
    return f"{cpu_model()}, {os.cpu_count()} CPUs; flags: {' '.join(present)}"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX).

    There bf16 convolutions with channels_last run the ResNet trunk several times faster than
    float32; elsewhere PyTorch emulates bf16, which is slower than float32.
    """
    return bool(set(BF16_FLAGS) & cpu_flags())


def cpu_has_int8_dot() -> bool:
    """Whether this CPU has int8 dot-product instructions (VNNI or AMX-INT8), without which
    int8 convolutions are no faster than float32 ones."""
    return bool(set(INT8_DOT_FLAGS) & cpu_flags())


def fast_cpu_backbone(device: torch.device, mode: str = "auto") -> bool:
    """``auto`` on a CPU with native bf16: run the frozen backbone in bf16, channels_last."""
    return device.type == "cpu" and mode == "auto" and cpu_has_native_bf16()


def autocast(device: torch.device, mode: str = "auto") -> contextlib.AbstractContextManager:
    """Whole-model bf16 autocast on CUDA for ``auto``/``bf16``; on a CPU only when ``bf16`` is
    forced (``auto`` there speeds up the frozen backbone alone, see ``fast_cpu_backbone``)."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def training_amp(mode: str, device: torch.device) -> str:
    """The ``amp`` mode training steps run under: ``auto`` also means bf16 autocast on a CPU
    with native bf16, where the steps of configs/large-scale-cpu.yaml run about 1.5x faster
    and those of configs/synthetic.yaml about 1.1x (``benchmarks/train_throughput.py``).
    Weights, optimizer state and losses stay float32; validation keeps ``mode`` itself, so
    its F1 and threshold are computed the way ``magneto evaluate`` computes them."""
    if mode == "auto" and device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return mode


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a training step can touch, as weights_only-safe values."""
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)  # legacy=True: ("MT19937", keys, pos, ...)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state[1].tolist(),
        "numpy_pos": int(numpy_state[2]),
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        ("MT19937", np.asarray(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0)
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up (env vars), choosing NCCL on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local), device


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (a copy on CPU for gloo; in place semantics are not relied on)."""
    if not info.enabled:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


@contextlib.contextmanager
def main_process_first(info: DistInfo) -> Iterator[None]:
    """Rank 0 does the work first (e.g. builds a cache); the others then find it done."""
    if not info.is_main:
        barrier(info)
    yield
    if info.is_main:
        barrier(info)


def parameter_checksum(module: torch.nn.Module) -> str:
    """A hex digest of all parameters and buffers, to compare replicas across ranks."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_run_dir(out: Path, resume: bool) -> None:
    """Never overwrite a run; resuming needs one."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a run directory; choose another --out")
    latest = out / "latest.ckpt"
    if resume and not latest.is_file():
        raise ConfigError(f"nothing to resume: {latest} does not exist")
    if not resume and out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"{out} already holds files; pass --resume to continue that run or choose another --out"
        )
