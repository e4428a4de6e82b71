"""ONNX in and out: export through PyTorch's supported exporter (``torch.onnx.export`` with
``dynamo=True``, built on ``torch.export``), ONNX Runtime sessions, and static int8
quantization. The optional packages (``onnx``, ``onnxscript``, ``onnxruntime``: the ``onnx``
extra) are imported here only, when needed, with one clear line when they are missing."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magneto.errors import MagnetoError

INSTALL_HINT = "pip install 'magneto-ets[onnx]'"
# Noise, not problems: the exporter notes that axes sharing one name are one axis, and its
# optimizer logs each pass (and that it leaves multi-output ops unfolded) at INFO, which a
# ``-v`` run would print. Warnings of those loggers still show; deprecations are never hidden.
_EXPORT_NOTES = r"# The axis name: .* will not be used"
_QUIET_LOGGERS = {
    "onnxscript": logging.WARNING,
    "onnx_ir": logging.WARNING,
    "onnxscript.optimizer._constant_folding": logging.ERROR,
}


def require(modules: Sequence[str], purpose: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MagnetoError(f"{purpose} needs {', '.join(missing)}: {INSTALL_HINT}")


def has_onnxruntime() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def can_export() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg, quiet in zip(loggers, _QUIET_LOGGERS.values(), strict=True):
        lg.setLevel(quiet)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_EXPORT_NOTES, category=UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: Any,
) -> None:
    """Write ``module`` (in eval mode, float32) to ``path`` through the dynamo exporter."""
    require(("onnx", "onnxscript"), "ONNX export")
    module.eval()
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            module,
            inputs,
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    if program is None:  # only without dynamo; kept for the type checker
        raise MagnetoError("the ONNX exporter returned no program")
    program.save(str(path))


def session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session using ``threads`` (default: torch's intra-op threads)."""
    require(("onnxruntime",), "the ONNX Runtime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    # Idle ORT threads spin after each run by default, stealing the cores PyTorch and the
    # image decoders use between runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its notes go to stderr otherwise
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


TRUNK_OPS = ("Conv", "Add", "Relu", "MaxPool")


def image_only_nodes(model: Any, image_input: str) -> list[str]:
    """Names of the nodes computed from ``image_input`` and constants alone (a graph's nodes
    are in topological order): the image trunk, never a node that also reads the tags."""
    known = {t.name for t in model.graph.initializer}
    derived = {image_input}
    picked = []
    for node in model.graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or not inputs:
            known.update(node.output)
        elif all(i in derived or i in known for i in inputs) and derived.intersection(inputs):
            derived.update(node.output)
            picked.append(node.name)
    return picked


def quantize_int8(
    source: Path,
    target: Path,
    batches: Iterable[dict[str, np.ndarray]],
    *,
    image_input: str = "images",
) -> None:
    """Static int8 quantization of the image trunk (QDQ; int8 weights per output channel, uint8
    activations with ranges averaged over ``batches``, the inputs to calibrate on): the
    convolutions, residual additions and pooling computed from ``image_input`` alone, so in a
    whole model the tag streams stay float32. ONNX Runtime's pre-processing first folds
    BatchNorm into the convolutions, so each convolution becomes one int8 kernel."""
    require(("onnxruntime", "onnx"), "int8 quantization")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    prepared = target.with_name(f".{target.name}.{os.getpid()}.pre.onnx")
    try:
        # Symbolic shape inference cannot follow the dynamo export's shape ops; ONNX's own
        # shape inference and the graph optimisations are what quantization needs.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        nodes = image_only_nodes(onnx.load(str(prepared)), image_input)
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(TRUNK_OPS),
            nodes_to_quantize=nodes,
            # Ranges from the mean of each batch's min/max, not the extremes of all: on the
            # synthetic validation split this halved the F1 lost to int8 (0.34 -> 0.14 points).
            extra_options={"CalibMovingAverage": True},
        )
    finally:
        prepared.unlink(missing_ok=True)
