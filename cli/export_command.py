"""``magneto export``: a checkpoint as ONNX or TorchScript for Triton / ONNX Runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from magneto.cli.common import add_calibration_arguments, calibration_from, print_json

# magneto.infer.export.FORMATS, named here so that --help does not import torch (tested)
EXPORT_FORMATS = ("onnx", "torchscript")


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "export",
        help="write the model as ONNX or TorchScript, with its vocabulary and threshold",
        description="Export a checkpoint's model (float32, eval mode) with dynamic batch size "
        "and tag-list length, and write FILE.json beside it: vocabulary, threshold, image "
        "preprocessing and the input/output names, dtypes and shapes.",
    )
    cmd.add_argument(
        "--checkpoint", required=True, type=Path, metavar="FILE", help="the checkpoint to export"
    )
    cmd.add_argument(
        "--format",
        required=True,
        choices=EXPORT_FORMATS,
        dest="fmt",
        help="the file format to write",
    )
    cmd.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="the model file to write"
    )
    cmd.add_argument(
        "--quantize",
        choices=("int8",),
        help="int8: the image trunk statically quantized (ONNX only; CPUs with VNNI or "
        "AMX-INT8), calibrated on --calibration",
    )
    add_calibration_arguments(
        cmd,
        "images to calibrate --quantize int8 on: an annotation file (e.g. val.csv) or a folder",
    )
    cmd.add_argument("--overwrite", action="store_true", help="replace FILE and FILE.json")
    cmd.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    cmd.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from magneto.infer.export import export_model

    result = export_model(
        args.checkpoint,
        args.fmt,
        args.out,
        overwrite=args.overwrite,
        quantize=args.quantize,
        calibration=calibration_from(args),
    )
    if args.json:
        print_json(result.metadata)
        return 0
    meta = result.metadata

    def describe(specs: list[dict]) -> str:
        return ", ".join(f"{s['name']} {s['dtype']} {s['shape']}" for s in specs)

    print(
        f"{meta['architecture']} -> {result.model_file} ({meta['format']}) and "
        f"{result.sidecar_file}; inputs: {describe(meta['inputs'])}; "
        f"outputs: {describe(meta['outputs'])}; threshold {meta['threshold']:g}"
        + ("; image trunk in int8" if meta.get("quantization") else "")
    )
    return 0
