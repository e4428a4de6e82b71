"""What a benchmark ran on: the CPU's model and the instruction-set flags that decide which
inference path pays (AVX-512, VNNI, native bf16, AMX), printed at the top of every report."""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def describe_cpu() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    present = [f for f in FLAGS if f in flags] or ["none of " + ", ".join(FLAGS)]
    return f"{model}, {os.cpu_count()} CPUs; flags: {' '.join(present)}"
