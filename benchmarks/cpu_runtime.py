"""CPU inference runtimes side by side, and whether each keeps the answers.

Speed: an untrained MAGNeto at the paper's NUS-WIDE setting (ResNet-18, 112 px, 8 tags an
item; speed does not depend on the weights), batches of 1, 16 and 32, 2 threads, candidates
interleaved round by round in one process, median ms per batch:

- original implementation style: float32, every item padded to l = 16 and let through;
- eager float32 (``--amp off``);
- bf16 backbone + channels_last (``--amp auto`` on a CPU with native bf16: the default);
- whole-model bf16 autocast (``--amp bf16``);
- int8: dynamic quantisation of the Linear layers (the convolutions have no dynamic form);
- ONNX Runtime, float32, on the exported model (when onnxruntime and the exporter are there).

Answers: a small synthetic dataset is generated and a model trained on it (or --checkpoint,
--data, --images are used), then validation F1 under each precision and the share of tags
whose keep/drop decision equals float32's. Usage:
    python benchmarks/cpu_runtime.py [--rounds 15] [--threads 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import REPO, build_checkpoint

L, SIZE, TAGS = 16, 112, 8


def inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, SIZE, SIZE, generator=generator)
    tags = torch.randint(0, 81, (batch, TAGS), generator=generator)
    return images, tags, torch.zeros(batch, TAGS, dtype=torch.bool)


def candidates(checkpoint: Path, workdir: Path) -> dict:
    """name -> function(images, tags, mask) running one batch."""
    from magneto.infer.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    eager = model_from_checkpoint(ckpt, "cpu", amp="off")
    fast = model_from_checkpoint(ckpt, "cpu", amp="auto")
    with warnings.catch_warnings():  # torch deprecates its quantized tensors; still measured
        warnings.simplefilter("ignore", UserWarning)
        int8 = torch.ao.quantization.quantize_dynamic(
            model_from_checkpoint(ckpt, "cpu", amp="off"), {torch.nn.Linear}, dtype=torch.qint8
        )

    def run(model, amp: bool = False):
        def call(images, tags, mask):
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=amp):
                return model(images, tags, mask).final.float()

        return call

    def original(images, tags, mask):  # pads to l and lets the padding through
        padded = torch.zeros(len(tags), L, dtype=torch.long)
        padded[:, : tags.shape[1]] = tags
        with torch.inference_mode():
            return eager(images, padded, torch.zeros_like(padded, dtype=torch.bool)).final

    out = {
        "original implementation style": original,
        "eager float32": run(eager),
        "bf16 backbone + channels_last": run(fast),
        "whole-model bf16 autocast": run(eager, amp=True),
        "int8 dynamic (Linear layers)": run(int8),
    }
    if not fast.image_extractor.cpu_bf16:
        out.pop("bf16 backbone + channels_last")
        print("note: this CPU has no native bf16; the default stays float32 here")
    onnx = ort_candidate(checkpoint, workdir)
    if onnx is not None:
        out["ONNX Runtime float32"] = onnx
    return out


def ort_candidate(checkpoint: Path, workdir: Path):
    try:
        import onnxruntime as ort

        from magneto.infer.export import export_model
    except ImportError as exc:
        print(f"note: ONNX Runtime not measured ({exc})")
        return None
    path = workdir / "model.onnx"
    export_model(checkpoint, "onnx", path, overwrite=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # ORT's idle threads spin after each run, which would slow whichever candidate runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def call(images, tags, mask):
        feeds = {"images": images.numpy(), "tags": tags.numpy(), "padding_mask": mask.numpy()}
        return session.run(None, {n: feeds[n] for n in names})[0]

    return call


def speed(checkpoint: Path, workdir: Path, rounds: int) -> dict[str, dict[int, float]]:
    runs = candidates(checkpoint, workdir)
    batches = {b: inputs(b) for b in (1, 16, 32)}
    times: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batches} for n in runs}
    for call in runs.values():  # warm-up
        for batch in batches.values():
            call(*batch)
    for _ in range(rounds):
        for b, batch in batches.items():
            for name, call in runs.items():
                start = time.perf_counter()
                call(*batch)
                times[name][b].append(time.perf_counter() - start)
    return {n: {b: 1000 * statistics.median(t) for b, t in by.items()} for n, by in times.items()}


def trained(workdir: Path) -> tuple[Path, Path, Path]:
    """A model trained briefly on fresh synthetic data: (checkpoint, val.csv, images)."""
    run = workdir / "run"
    if not (run / "best_f1.ckpt").is_file():
        cli = [sys.executable, "-m", "magneto.cli.main"]
        quiet = {"cwd": REPO, "check": True, "capture_output": True}
        subprocess.run([*cli, "synth", "--out", str(workdir / "raw"), "--items", "1500"], **quiet)
        prep = ["prepare", "nuswide", "--root", str(workdir / "raw"), "--out"]
        subprocess.run([*cli, *prep, str(workdir / "prepared")], **quiet)
        train = ["train", "--config", str(REPO / "configs" / "synthetic.yaml"), "--epochs", "6"]
        train += ["--data", str(workdir / "prepared"), "--images", str(workdir / "raw" / "Flickr")]
        subprocess.run([*cli, *train, "--out", str(run), "--no-progress"], **quiet)
    return run / "best_f1.ckpt", workdir / "prepared" / "val.csv", workdir / "raw" / "Flickr"


def answers(checkpoint: Path, data: Path, images: Path) -> dict[str, dict[str, float]]:
    from magneto.data.annotation_files import read_annotations
    from magneto.infer.predictor import ItemFailure, Predictor, PredictRequest
    from magneto.training import evaluate_checkpoint

    records = read_annotations(data)
    requests = [PredictRequest(images / r.image_path, r.tags) for r in records]
    kept = {}
    out = {}
    for amp in ("off", "auto", "bf16"):
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu", amp=amp)
        results = predictor.predict_batch(requests, batch_size=32)
        kept[amp] = [t.kept for r in results if not isinstance(r, ItemFailure) for t in r.tags]
        f1 = evaluate_checkpoint(checkpoint, data, images, amp=amp, progress=False).metrics.f1
        out[amp] = {"f1": 100 * f1}
    for amp in out:
        same = np.asarray(kept[amp]) == np.asarray(kept["off"])
        out[amp]["agreement"] = 100 * float(same.mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory")
    parser.add_argument("--checkpoint", type=Path, help="trained model for the answers")
    parser.add_argument("--data", type=Path, help="its validation CSV")
    parser.add_argument("--images", type=Path, help="its image directory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        figures = speed(build_checkpoint(workdir), workdir, args.rounds)
        base, original = figures["eager float32"], figures["original implementation style"]
        print(
            f"ResNet-18 MAGNeto, {SIZE} px, {TAGS} tags, {args.threads} threads, median of "
            f"{args.rounds} interleaved rounds; ms per batch (x eager float32, x original)"
        )
        print(f"{'runtime':<32}" + "".join(f"{'batch ' + str(b):>26}" for b in (1, 16, 32)))
        for name, by in figures.items():
            cells = "".join(
                f"{ms:>10.1f} ({base[b] / ms:4.2f}x, {original[b] / ms:4.2f}x)"
                for b, ms in by.items()
            )
            print(f"{name:<32}{cells}")
        checkpoint, data, images = (
            (args.checkpoint, args.data, args.images) if args.checkpoint else trained(workdir)
        )
        print(f"answers on {data} ({checkpoint}):")
        names = {"off": "float32", "auto": "bf16 backbone (default)", "bf16": "whole-model bf16"}
        for amp, result in answers(checkpoint, data, images).items():
            print(
                f"  {names[amp]:<26} validation F1 {result['f1']:.2f} %, "
                f"keep/drop agreement with float32 {result['agreement']:.2f} % of tags"
            )


if __name__ == "__main__":
    main()
