"""CPU inference runtimes side by side: speed against the original implementation, what
``--runtime auto`` picks, and whether each runtime keeps float32's answers.

Speed: an untrained MAGNeto at the paper's NUS-WIDE setting (ResNet-18, 112 px, 8 tags an
item; speed does not depend on the weights), ``Predictor.predict_batch`` on in-memory 112 x 112
images at batch 1 and 32, every runtime forced in turn and ``auto``, against the original
implementation's eval forward (float32, every item padded to l = 16 and let through) on the
same tensors; candidates interleaved round by round in one process, medians.

Answers: a model trained on synthetic data (the synthetic profile's recipe, 1,000 items),
int8 calibrated on its training split; on the validation split, F1 under each runtime and the
share of keep/drop decisions equal to float32's.

``--emulate-vnni-only`` makes this machine behave like a CPU with AVX-512 VNNI but no BF16 and
no AMX (the common server CPU): oneDNN is capped at AVX512_CORE_VNNI, the kernel refuses this
process the AMX tile state (seccomp on arch_prctl(ARCH_REQ_XCOMP_PERM)), so neither PyTorch
nor ONNX Runtime can use AMX, and magneto sees no native bf16. Usage:
    python benchmarks/cpu_runtime.py [--rounds 9] [--threads 2] [--workdir DIR]
        [--emulate-vnni-only]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

L, SIZE, TAGS = 16, 112, 8
EMULATED_AWAY = ("avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def deny_amx() -> None:
    """Refuse this process (and its threads) the AMX tile state: a seccomp filter answers
    arch_prctl(ARCH_REQ_XCOMP_PERM, ...) with EPERM, as a kernel without AMX support would."""

    def insn(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    program = b"".join(
        [
            insn(0x20, 0, 0, 4),  # load the architecture
            insn(0x15, 0, 5, 0xC000003E),  # x86-64, else allow
            insn(0x20, 0, 0, 0),  # load the syscall number
            insn(0x15, 0, 3, 158),  # arch_prctl, else allow
            insn(0x20, 0, 0, 16),  # load its first argument
            insn(0x15, 0, 1, 0x1023),  # ARCH_REQ_XCOMP_PERM, else allow
            insn(0x06, 0, 0, 0x00050001),  # return ERRNO(EPERM)
            insn(0x06, 0, 0, 0x7FFF0000),  # return ALLOW
        ]
    )
    buffer = ctypes.create_string_buffer(program, len(program))

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Program(len(program) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, filter mode
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def emulate_vnni_only() -> None:
    """Before torch is imported: no AMX, oneDNN capped at VNNI, magneto sees no bf16."""
    deny_amx()
    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_VNNI"
    import magneto.devices as devices

    flags = devices.cpu_flags() - set(EMULATED_AWAY)
    devices.cpu_flags = lambda: flags  # type: ignore[assignment]


def in_memory_items(count: int, seed: int = 0) -> list[tuple[Any, list[str]]]:
    import numpy as np

    from magneto.sources.synthetic.scenes import CONCEPTS81

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)
    words = list(CONCEPTS81)
    return [
        (image, [words[i] for i in rng.choice(len(words), TAGS, replace=False)]) for image in images
    ]


def original_forward(checkpoint: Path):
    """The original implementation's eval forward: float32, tags padded to l and let through."""
    import torch

    from magneto.infer.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(checkpoint), "cpu", amp="off")

    def make(batch: int):
        generator = torch.Generator().manual_seed(batch)
        images = torch.randn(batch, 3, SIZE, SIZE, generator=generator)
        tags = torch.zeros(batch, L, dtype=torch.long)
        tags[:, :TAGS] = torch.randint(0, 81, (batch, TAGS), generator=generator)
        mask = torch.zeros_like(tags, dtype=torch.bool)

        def call() -> None:
            with torch.inference_mode():
                model(images, tags, mask)

        return call

    return make


def predictors(
    checkpoint: Path, calibration: Any, auto: bool = True
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every runtime this machine can run, forced, plus ``auto``; and why the others cannot."""
    from magneto.errors import MagnetoError
    from magneto.infer.predictor import Predictor
    from magneto.infer.runtimes import RUNTIMES

    found, missing = {}, {}
    for name in RUNTIMES:
        try:
            found[name] = Predictor.from_checkpoint(
                checkpoint, device="cpu", runtime=name, calibration=calibration
            )
        except MagnetoError as exc:
            missing[name] = str(exc)
    if auto:
        found["auto"] = Predictor.from_checkpoint(
            checkpoint, device="cpu", runtime="auto", batch_size=32, calibration=calibration
        )
    return found, missing


def speed(checkpoint: Path, calibration: Any, rounds: int) -> tuple[dict, dict, Any]:
    """Median ms per batch of 1 and 32 of each candidate."""
    from magneto.infer.predictor import Predictor

    runs, missing = predictors(checkpoint, calibration)
    choice = runs["auto"].runtime
    original = original_forward(checkpoint)
    items = {b: in_memory_items(b, seed=b) for b in (1, 32)}
    calls: dict[str, dict[int, Any]] = {"original implementation": {b: original(b) for b in items}}
    for name, predictor in runs.items():
        assert isinstance(predictor, Predictor)
        calls[name] = {
            b: (lambda p=predictor, x=batch: p.predict_batch(x, batch_size=32))
            for b, batch in items.items()
        }
    for by in calls.values():  # warm-up
        for call in by.values():
            call()
    times: dict[str, dict[int, list[float]]] = {n: {b: [] for b in items} for n in calls}
    for _ in range(rounds):
        for name, by in calls.items():
            for b, call in by.items():
                started = time.perf_counter()
                call()
                times[name][b].append(1000 * (time.perf_counter() - started))
    medians = {n: {b: statistics.median(t) for b, t in by.items()} for n, by in times.items()}
    return medians, missing, choice


def pt2e_attempt() -> str:
    """Whether PyTorch's own int8 flow (PT2E, x86 quantizer) quantizes the trunk here."""
    import torch
    import torchvision

    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError as exc:
        return f"not available: {exc}"
    trunk = torchvision.models.resnet18().eval()
    example = (torch.randn(2, 3, SIZE, SIZE),)
    try:
        graph = torch.export.export(trunk, example).module()
        quantizer = X86InductorQuantizer()
        quantizer.set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
        prepared(*example)
        convert_pt2e(prepared)
    except Exception as exc:  # the figure is whether it works at all
        return f"fails on a stock ResNet-18: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return "quantizes a stock ResNet-18 (its int8 kernels then need torch.compile)"


def trained(workdir: Path) -> tuple[Path, Path, Path]:
    """The synthetic profile's recipe on 1,000 items: (checkpoint, prepared dir, images)."""
    from magneto.config import RunConfig, load_config
    from magneto.configs import config_path
    from magneto.sources.nuswide import prepare_nuswide
    from magneto.sources.synthetic.generator import SynthConfig, generate
    from magneto.training import run_training

    root = workdir / "synthetic"
    checkpoint = root / "run" / "best_f1.ckpt"
    if not checkpoint.is_file():
        generate(SynthConfig(items=1000, unlabeled=0, seed=7), root / "raw")
        prepare_nuswide(root / "raw", root / "prepared")
        overrides = {
            "data": str(root / "prepared"),
            "images": str(root / "raw" / "Flickr"),
            "out": str(root / "run"),
            "epochs": 12,
            "progress": False,
            "feature_cache_dir": str(root / "features"),
        }
        run_training(load_config(RunConfig, config_path("synthetic"), overrides))
    return checkpoint, root / "prepared", root / "raw" / "Flickr"


def answers(checkpoint: Path, data: Path, images: Path) -> dict[str, tuple[float, float]]:
    """Validation F1 and agreement with float32 (both in %) under each runtime."""
    import numpy as np

    from magneto.data.annotation_files import read_annotations
    from magneto.infer.runtimes import Calibration
    from magneto.training import evaluate_checkpoint

    calibration = Calibration(data / "train.csv", images)
    records = read_annotations(data / "val.csv")
    items = [(images / r.image_path, r.tags) for r in records]
    runs, _ = predictors(checkpoint, calibration, auto=False)
    kept = {
        name: [getattr(p, "tags", None) for p in predictor.predict_batch(items)]
        for name, predictor in runs.items()
    }
    out = {}
    for name in kept:
        pairs = [
            a.kept == b.kept
            for mine, ref in zip(kept[name], kept["float32"], strict=True)
            if mine is not None and ref is not None
            for a, b in zip(mine, ref, strict=True)
        ]
        result = evaluate_checkpoint(
            checkpoint,
            data / "val.csv",
            images,
            runtime=name,
            calibration=calibration,
            workers=0,
            progress=False,
        )
        out[name] = (100 * result.metrics.f1, 100 * float(np.mean(pairs)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory")
    parser.add_argument(
        "--emulate-vnni-only", action="store_true", help="behave like a CPU without bf16/AMX"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.emulate_vnni_only:
        emulate_vnni_only()
    import torch
    from machine import header
    from serve_load import build_checkpoint

    from magneto.infer.runtimes import Calibration

    torch.set_num_threads(args.threads)
    print(header("CPU inference runtimes"), flush=True)
    if args.emulate_vnni_only:
        print(f"emulated: no AMX, oneDNN <= AVX512_CORE_VNNI, hidden: {' '.join(EMULATED_AWAY)}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MAGNETO_CACHE_DIR", str(workdir / "cache"))
        checkpoint, data, images = trained(workdir)
        calibration = Calibration(data / "train.csv", images)
        figures, missing, choice = speed(build_checkpoint(workdir), calibration, args.rounds)
        print(
            f"\nResNet-18 MAGNeto, {SIZE} px, {TAGS} tags, Predictor.predict_batch on in-memory "
            f"images; median of {args.rounds} interleaved rounds; ms (x original, x float32)"
        )
        original, f32 = figures["original implementation"], figures["float32"]
        print(f"{'runtime':<26}{'batch 1':>26}{'batch 32':>26}")
        for name, by in figures.items():
            cells = "".join(
                f"{ms:>10.1f} ({original[b] / ms:5.2f}x, {f32[b] / ms:5.2f}x)"
                for b, ms in by.items()
            )
            label = f"auto (picked {choice.name})" if name == "auto" else name
            print(f"{label:<26}{cells}")
        for name, why in missing.items():
            print(f"{name:<26}not measured: {why}")
        print(f"\nauto's own measurement: {choice.describe()}")
        others = ("auto", "original implementation")
        forced = {n: by[32] for n, by in figures.items() if n not in others}
        fastest = min(forced, key=lambda n: forced[n])
        print(
            f"auto's pick at batch 32 / fastest here ({fastest}): "
            f"{figures[choice.name][32] / forced[fastest]:.3f} (target <= 1.05)"
        )
        print(
            f"auto batch 32 vs original: {original[32] / figures['auto'][32]:.2f}x "
            "(target >= 3 on a native-bf16 CPU, >= 2.5 elsewhere); "
            f"auto batch 1 / float32 batch 1: {figures['auto'][1] / f32[1]:.2f} (target <= 1)"
        )
        print(f"PyTorch PT2E int8 (torchao x86 quantizer): {pt2e_attempt()}")
        print(f"\nanswers on {data / 'val.csv'}: the synthetic recipe, 1,000 items")
        for name, (f1, agreement) in answers(checkpoint, data, images).items():
            print(
                f"  {name:<8} validation F1 {f1:.2f} %, keep/drop decisions equal to "
                f"float32's {agreement:.2f} %"
            )


if __name__ == "__main__":
    main()
