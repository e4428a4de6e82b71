"""What a benchmark ran on, printed at the top of every report so that figures from different
machines are never compared blindly: the CPU model and the flags that decide which inference
path pays (AVX-512, VNNI, native bf16, AMX), torch's version and thread count, the GPU if any.
"""

from __future__ import annotations


def describe_cpu() -> str:
    from magneto.devices import describe_cpu as describe

    return describe()


def header(title: str) -> str:
    """``title`` and the machine, as the first lines of a report."""
    import torch

    lines = [
        f"# {title}",
        f"cpu: {describe_cpu()}",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    ]
    if torch.cuda.is_available():
        lines.append(f"gpu: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
    return "\n".join(lines)
