"""Export a checkpoint as ONNX or TorchScript, with a JSON sidecar that makes it usable alone.

The model's own forward packs the real tags of a batch with a data-dependent ``nonzero``
(:class:`~magneto.model.packing.Packing`), which tracing bakes in as constant shapes. The
exported graph is therefore traced from :class:`PaddedModel`: the very same submodules and
math, run on the padded ``(B, L)`` layout, where padded keys are masked out of every
attention (so padded positions still cannot influence real ones) and padded outputs are set
to 0 as in the eager model. Nothing in the graph depends on the data, so batch size and
tag-list length stay dynamic, and the model's normal (packed, faster) forward is untouched.

ONNX goes through PyTorch's supported exporter, ``torch.onnx.export(..., dynamo=True)``
(``torch.export`` underneath; the ``onnx`` extra brings its packages), with the batch and
tag-list dimensions declared dynamic. ``--quantize int8`` then quantizes the image trunk of
that graph statically (:mod:`magneto.infer.export_int8`). TorchScript is ``torch.jit.trace``,
which PyTorch has deprecated: its warnings are shown, not hidden.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from magneto import __version__
from magneto.data.images import IMAGENET_MEAN, IMAGENET_STD
from magneto.errors import MagnetoError
from magneto.infer.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from magneto.infer.export_int8 import check_quantization, quantize_export
from magneto.infer.onnx_io import export_onnx, require
from magneto.infer.runtimes.cache import replace_with
from magneto.infer.runtimes.calibration import Calibration
from magneto.model.architectures import TagModel
from magneto.model.config import ModelConfig
from magneto.model.packing import Packing

FORMATS = ("onnx", "torchscript")
BATCH, TAGS = "batch", "tags"  # names of the dynamic dimensions


class ExportError(MagnetoError):
    """An export was asked for that cannot be done (unknown format, output exists...)."""


class PaddedLayout(Packing):
    """A :class:`Packing` whose "packed" layout is the padded ``(B, L, ...)`` one.

    ``pack``/``unpack`` are identities, so every layer runs on all positions; attention
    still reads ``padding_mask`` to ignore padded keys. An item that is all padding keeps
    all its keys (else its softmax rows would be NaN); its outputs are discarded anyway.
    """

    def __init__(self, padding_mask: torch.Tensor) -> None:
        all_padding = padding_mask.all(dim=1, keepdim=True)
        self.padding_mask = padding_mask & ~all_padding
        self.batch, self.length = padding_mask.shape
        self.index = torch.empty(0, dtype=torch.long)  # unused: nothing is gathered

    @property
    def tokens(self) -> int:
        return self.batch * self.length

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def unpack(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        return x


def output_names(config: ModelConfig) -> list[str]:
    """The probabilities a model has, in ModelOutput order; streams it lacks are omitted."""
    names = ["final"]
    if config.architecture in ("magneto", "ff", "tf-t"):
        names.append("tag")
    if config.uses_images:
        names.append("image")
    if config.architecture == "magneto" and config.gating:
        names.append("alpha")
    return names


def input_names(config: ModelConfig) -> list[str]:
    return (["images"] if config.uses_images else []) + ["tags", "padding_mask"]


class PaddedModel(nn.Module):
    """Export-only view of a model: ``(images?, tags, padding_mask)`` -> a tuple of ``(B, L)``.

    Outputs are the probabilities named by :func:`output_names`, 0 at padded positions.
    Eval mode and float32 only; training-time dropout is not part of the graph.
    """

    def __init__(self, model: TagModel) -> None:
        super().__init__()
        self.model = model.float().eval()
        if model.uses_images and getattr(model.image_extractor, "cpu_bf16", False):
            model.image_extractor.cpu_bf16 = False  # the bf16 CPU trunk: exports are float32
        self.uses_images = model.uses_images
        self.output_names = output_names(model.config)
        self.padding_index = int(model.config.vocab_size or 0)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Any: each architecture has its own layers (``blocks`` and ``head`` only in FF, ...).
        m: Any = self.model
        arch = self.model.config.architecture
        images = inputs[0] if self.uses_images else None
        tags, padding_mask = inputs[-2], inputs[-1]
        layout = PaddedLayout(padding_mask)
        # Whatever a client puts at padded positions is never looked up.
        tags = tags.masked_fill(padding_mask, self.padding_index)
        embedded = m._embed(tags, layout)
        out: dict[str, torch.Tensor] = {}
        if arch == "ff":
            logits = m.head(torch.relu(m.blocks(embedded))).squeeze(-1)
            out["tag"] = torch.sigmoid(m._biased(logits, tags, layout))
        if arch in ("magneto", "tf-t"):
            tag_features, tag_logits = m.tag_stream(embedded, layout)
            out["tag"] = torch.sigmoid(m._biased(tag_logits, tags, layout))
        if self.uses_images:
            regions, _ = m._regions(images, None)
            image_features, image_logits = m.image_stream(embedded, regions, layout)
            out["image"] = torch.sigmoid(m._biased(image_logits, tags, layout))
        if arch == "magneto":
            if m.gate is None:
                out["final"] = 0.5 * (out["tag"] + out["image"])
            else:
                out["alpha"] = m.gate(tag_features, image_features)
                out["final"] = out["alpha"] * out["image"] + (1.0 - out["alpha"]) * out["tag"]
        else:
            out["final"] = out["tag" if "tag" in out else "image"]
        return tuple(out[name].masked_fill(padding_mask, 0.0) for name in self.output_names)


def io_spec(checkpoint: Checkpoint) -> dict[str, list[dict[str, Any]]]:
    """Names, dtypes and shapes of the exported inputs and outputs (strings: dynamic dims)."""
    config, size = checkpoint.model_config, checkpoint.input_size
    inputs: list[dict[str, Any]] = [
        {"name": "tags", "dtype": "int64", "shape": [BATCH, TAGS]},
        {"name": "padding_mask", "dtype": "bool", "shape": [BATCH, TAGS]},
    ]
    if config.uses_images:
        inputs.insert(0, {"name": "images", "dtype": "float32", "shape": [BATCH, 3, size, size]})
    outputs = [
        {"name": n, "dtype": "float32", "shape": [BATCH, TAGS]} for n in output_names(config)
    ]
    return {"inputs": inputs, "outputs": outputs}


def sidecar(checkpoint: Checkpoint, fmt: str, model_file: str) -> dict[str, Any]:
    """Everything a Triton / ONNX Runtime client needs besides the model file."""
    config, vocab = checkpoint.model_config, checkpoint.vocabulary
    image = None
    if config.uses_images:
        size = checkpoint.input_size
        image = {
            "input_size": size,
            "layout": "NCHW, RGB, float32",
            "decode": "EXIF orientation applied; any mode -> RGB (transparency over white)",
            "resize": f"shorter side to {size} px (area interpolation), aspect kept",
            "crop": f"centre crop {size}x{size}",
            "normalize": "x = (pixel / 255 - mean) / std, per channel",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }
    return {
        "format": fmt,
        "model_file": model_file,
        "magneto_version": __version__,
        "architecture": config.architecture,
        "backbone": config.backbone if config.uses_images else None,
        "stage": checkpoint.stage,
        "threshold": checkpoint.threshold,
        "vocabulary": {
            "words": vocab.words,  # words[i] is the tag of index i
            "size": len(vocab),
            "padding_index": vocab.padding_index,
            "normalization": "NFKC, trimmed, inner whitespace collapsed, case-folded; "
            "duplicates merged; unknown tags are not sent to the model",
        },
        "image": image,
        **io_spec(checkpoint),
        "semantics": {
            "padding_mask": "True where a position is padding (as in PyTorch); tags there are "
            "ignored and the outputs there are 0",
            "final": "score per tag; a tag is kept when final >= threshold",
            "tag": "tag-stream probability O_t",
            "image": "image-stream probability O_it",
            "alpha": "gate: weight of the image stream in final",
            "absent_outputs": "an architecture lacking a stream has no output for it",
        },
    }


@dataclass(frozen=True)
class ExportResult:
    model_file: Path
    sidecar_file: Path
    metadata: dict[str, Any]


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def example_inputs(model: TagModel, input_size: int) -> tuple[torch.Tensor, ...]:
    """Two items, three tag slots, one padded: enough to trace every op once."""
    tags = torch.zeros(2, 3, dtype=torch.long)
    padding_mask = torch.tensor([[False, False, True], [False, False, False]])
    if not model.uses_images:
        return tags, padding_mask
    return torch.zeros(2, 3, input_size, input_size), tags, padding_mask


def write_onnx(wrapper: PaddedModel, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    tag_dims = {0: BATCH, 1: TAGS}
    dims: tuple[dict[int, str], ...] = (tag_dims, tag_dims)
    if wrapper.uses_images:
        dims = ({0: BATCH}, *dims)
    export_onnx(
        wrapper,
        inputs,
        path,
        input_names=input_names(wrapper.model.config),
        output_names=wrapper.output_names,
        dynamic_shapes={"inputs": dims},  # PaddedModel.forward(*inputs)
    )


def _write_torchscript(
    wrapper: PaddedModel, inputs: tuple[torch.Tensor, ...], path: Path, metadata: str
) -> None:
    traced = torch.jit.trace(wrapper, inputs, check_trace=False)
    # The sidecar travels inside the file too: torch.jit.load(..., _extra_files=...).
    torch.jit.save(traced, str(path), _extra_files={"magneto.json": metadata})


def export_model(
    checkpoint_path: str | Path,
    fmt: str,
    out: str | Path,
    *,
    overwrite: bool = False,
    quantize: str | None = None,
    calibration: Calibration | None = None,
) -> ExportResult:
    """Write ``out`` (the model) and ``out.json`` (its sidecar); never overwrites unasked.
    ``quantize="int8"``: the image trunk of the ONNX model in int8, calibrated on
    ``calibration``."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    meta_path = sidecar_path(out)
    for path in (out, meta_path):
        if path.is_dir():
            raise ExportError(f"{path} is a directory: give the path of the file to write")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    checkpoint = load_checkpoint(checkpoint_path)
    if quantize is not None:
        check_quantization(quantize, fmt, checkpoint, calibration)
    elif fmt == "onnx":
        require(("onnx", "onnxscript"), "ONNX export")
    model = model_from_checkpoint(checkpoint, "cpu", amp="off")  # float32 all through
    wrapper = PaddedModel(model)
    metadata = sidecar(checkpoint, fmt, out.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(model, checkpoint.input_size)

    def write(tmp: Path) -> None:
        if fmt == "onnx":
            write_onnx(wrapper, inputs, tmp)
            if quantize is not None and calibration is not None:  # checked above
                metadata["quantization"] = quantize_export(tmp, checkpoint, calibration)
            return
        with torch.no_grad(), warnings.catch_warnings():
            # The trace records the region grid's size as a constant, as it is for the
            # fixed input size; PyTorch's deprecation of tracing itself stays visible.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            _write_torchscript(wrapper, inputs, tmp, json.dumps(metadata, indent=2))

    replace_with(out, write)
    text = json.dumps(metadata, indent=2) + "\n"
    replace_with(meta_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return ExportResult(out, meta_path, metadata)
