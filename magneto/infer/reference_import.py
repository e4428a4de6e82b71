"""Import ``best_f1.pth`` files of the original public MAGNeto implementation (pixta-dev/labteam).

Teams that trained with the paper's code keep their models as that code saved them: a dict with
``model`` (the state dict), ``optimizer``, the best metrics as numpy scalars and ``config`` (the
training script's argparse values, a dict or an ``argparse.Namespace``). This module turns such
a file into our self-describing :class:`~magneto.infer.checkpoint.Checkpoint`, so every command that
takes a checkpoint (predict, evaluate, serve, summarize, export) runs it unchanged.

The file is read with ``torch.load(weights_only=True)``: nothing in it is unpickled except
tensors, containers, numbers and strings, plus the few harmless types such files hold (numpy
scalars and dtypes, ``argparse.Namespace``, whose construction runs no code of the file). The
architecture is read off the tensors' shapes; only the number of heads is not in the weights.
"""

from __future__ import annotations

import argparse
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magneto.data.vocabulary import Vocabulary
from magneto.errors import MagnetoError, blocked_global, refusal, unpickling_reason
from magneto.infer.checkpoint import Checkpoint
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig

try:  # numpy scalars pickle as multiarray.scalar(dtype, bytes), named after numpy 1 or 2
    from numpy._core.multiarray import scalar as _SCALAR
except ImportError:  # numpy 1.26
    from numpy.core.multiarray import scalar as _SCALAR  # type: ignore[no-redef]

# Our state-dict prefix -> the reference's. Suffixes carry over unchanged: both Transformer
# encoders are nn.TransformerEncoder-compatible, and the trunk holds torchvision's modules. The
# reference backbone is ``nn.Sequential(*resnet.children()[:-2])`` (0 conv1, 1 bn1, 2 relu,
# 3 maxpool, 4-7 layer1-4); ours groups the stem: trunk.0 = (conv1, bn1, relu, maxpool),
# trunk.1-4 = layer1-4. The reference gate returns the image stream's weight, as our alpha does
# (O = alpha * O_it + (1 - alpha) * O_t), on cat(tag features, image features) in that order.
REFERENCE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("tag_embedder.embedding.", "tag_embedder.embed."),
    ("tag_stream.encoder.layers.", "tag_encoder.layers."),
    ("tag_stream.head.", "tag_linear."),
    ("image_extractor.trunk.0.0.", "img_feature_extractor.backbone.0."),  # conv1
    ("image_extractor.trunk.0.1.", "img_feature_extractor.backbone.1."),  # bn1
    ("image_extractor.trunk.1.", "img_feature_extractor.backbone.4."),  # layer1
    ("image_extractor.trunk.2.", "img_feature_extractor.backbone.5."),  # layer2
    ("image_extractor.trunk.3.", "img_feature_extractor.backbone.6."),  # layer3
    ("image_extractor.trunk.4.", "img_feature_extractor.backbone.7."),  # layer4
    ("image_extractor.conv.", "img_feature_extractor.conv_1x1."),
    ("image_extractor.bn.", "img_feature_extractor.bn."),
    ("image_stream.attention.out_proj.", "tag_to_img.attn.out."),
    ("image_stream.encoder.layers.", "img_encoder.layers."),
    ("image_stream.head.", "img_linear."),
    ("gate.net.1.", "gating.linear_1."),  # net = Dropout, Linear, ReLU, Dropout, Linear
    ("gate.net.4.", "gating.linear_2."),
)
# The reference's tag-to-image attention keeps separate query/key/value layers (scaled dot
# product, softmax, dropout, ``out``: what nn.MultiheadAttention computes); ours is fused, and
# its in_proj rows are [query; key; value].
FUSED = {
    f"image_stream.attention.in_proj_{kind}": tuple(
        f"tag_to_img.attn.{part}_linear.{kind}" for part in "qkv"
    )
    for kind in ("weight", "bias")
}
NOT_METRICS = {"model", "optimizer", "config", "scheduler", "state_dict"}
_DTYPES = [getattr(np.dtypes, f"{kind}DType") for kind in (
    "Float16", "Float32", "Float64", "Int8", "Int16", "Int32", "Int64",
    "UInt8", "UInt16", "UInt32", "UInt64", "Bool",
)]  # fmt: skip
SAFE_GLOBALS: list[Any] = [
    (_SCALAR, "numpy.core.multiarray.scalar"),
    (_SCALAR, "numpy._core.multiarray.scalar"),
    np.dtype,
    *_DTYPES,
    argparse.Namespace,
]
_BLOCKED = (
    re.compile(r"GLOBAL (\S+) was not an allowed"),
    re.compile(r"but got <class '([^']+)'>"),
)


class ReferenceImportError(MagnetoError):
    """A reference checkpoint cannot be read or does not fit a MAGNeto model."""


@dataclass
class ImportResult:
    """The converted checkpoint and one-line notes on what was inferred, for the user."""

    checkpoint: Checkpoint
    notes: list[str] = field(default_factory=list)


def reference_names(our_key: str) -> tuple[str, ...]:
    """The reference state-dict key(s) our parameter or buffer ``our_key`` is made from."""
    if our_key in FUSED:
        return FUSED[our_key]
    for ours, theirs in REFERENCE_PREFIXES:
        if our_key.startswith(ours):
            return (theirs + our_key.removeprefix(ours),)
    raise ReferenceImportError(f"no reference name for {our_key}: this MAGNeto cannot import")


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a config or metric value (numpy/tensor scalars to numbers)."""
    if isinstance(value, np.generic | torch.Tensor) and value.ndim == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def read_reference(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict]:
    """Load the file safely: (state dict without ``module.``, config dict, best metrics)."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceImportError(f"reference checkpoint not found: {path}")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(SAFE_GLOBALS):
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for refused or foreign files
        text = str(exc)
        blocked = next((m.group(1) for p in _BLOCKED if (m := p.search(text))), None)
        if blocked:
            raise ReferenceImportError(
                f"{path} holds a {blocked} object; MAGNeto never unpickles arbitrary objects "
                "(only tensors, numbers, strings, numpy scalars): re-save the file with that "
                "entry as plain values"
            ) from None
        if blocked_global(exc) is not None:  # a pickled reference to code: name it
            raise ReferenceImportError(refusal(path, exc, "reference checkpoint")) from None
        reason = unpickling_reason(exc)  # torch's reason, without its advice
        raise ReferenceImportError(
            f"cannot read {path} as a PyTorch checkpoint: {reason}"
        ) from None
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = {"model": obj}  # a bare state dict
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise ReferenceImportError(f"{path} has no 'model' state dict: not a reference checkpoint")
    state = {str(k).removeprefix("module."): v for k, v in obj["model"].items()}
    odd = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise ReferenceImportError(f"{path}: model entry {odd} is not a tensor")
    config = obj.get("config") or {}
    config = vars(config) if isinstance(config, argparse.Namespace) else config
    if not isinstance(config, dict):
        raise ReferenceImportError(f"{path}: 'config' is a {type(config).__name__}, not a dict")
    metrics = {}
    for key, value in obj.items():
        plain = _plain(value)
        if key not in NOT_METRICS and isinstance(plain, int | float) and type(plain) is not bool:
            metrics[str(key)] = plain
    return state, {str(k): _plain(v) for k, v in config.items()}, metrics


def _tensor(state: dict[str, torch.Tensor], key: str, dims: int) -> torch.Tensor:
    if key not in state:
        raise ReferenceImportError(f"the reference state dict has no {key}")
    if state[key].dim() != dims:
        raise ReferenceImportError(f"{key} has shape {list(state[key].shape)}, not {dims}-D")
    return state[key]


def _layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{prefix}(\d+)\.", k))}
    if not found:
        raise ReferenceImportError(f"the reference state dict has no {prefix}0.* (no layers)")
    return max(found) + 1  # a gap shows up as missing keys later


def infer_config(
    state: dict[str, torch.Tensor], config: dict[str, Any], heads: int | None = None
) -> tuple[ModelConfig, list[str]]:
    """The model config the weights describe; heads from ``heads``, the config or the paper."""
    rows, d_model = _tensor(state, "tag_embedder.embed.weight", 2).shape
    t_ff = _tensor(state, "tag_encoder.layers.0.linear1.weight", 2).shape[0]
    i_ff = _tensor(state, "img_encoder.layers.0.linear1.weight", 2).shape[0]
    resnet50 = "img_feature_extractor.backbone.4.0.conv3.weight" in state
    inferred = {
        "d_model": d_model,
        "t_blocks": _layers(state, "tag_encoder.layers."),
        "i_blocks": _layers(state, "img_encoder.layers."),
        "t_dim_feedforward": t_ff,
        "i_dim_feedforward": i_ff,
        "g_dim_feedforward": _tensor(state, "gating.linear_1.weight", 2).shape[0],
        "img_backbone": "resnet50" if resnet50 else "resnet18",
    }
    for key, value in inferred.items():
        if config.get(key) is not None and config[key] != value:
            raise ReferenceImportError(
                f"the file's config says {key}={config[key]} but its weights have {value}"
            )
    if t_ff != i_ff:
        raise ReferenceImportError(
            f"tag and image encoders have different feed-forward widths ({t_ff}, {i_ff}); "
            "MAGNeto models share one d_ff"
        )
    notes = []
    if heads is None:
        t_heads, i_heads = config.get("t_heads"), config.get("i_heads")
        if t_heads is not None and i_heads is not None and t_heads != i_heads:
            raise ReferenceImportError(
                f"t_heads={t_heads} and i_heads={i_heads} differ; MAGNeto models share one heads"
            )
        heads = t_heads if t_heads is not None else i_heads
        if heads is None:
            heads = 8 if d_model >= 512 else 4
            notes.append(
                f"heads {heads}: the paper's value for d_model {d_model} (the file does not say; "
                "pass --heads if the model was trained with another)"
            )
        else:
            notes.append(f"heads {heads}: from the file's config")
    dropout = config.get("dropout")
    model_config = ModelConfig(
        vocab_size=rows - 1,
        d_model=d_model,
        heads=heads,
        tag_layers=inferred["t_blocks"],
        image_layers=inferred["i_blocks"],
        d_ff=t_ff,
        gate_d_ff=inferred["g_dim_feedforward"],
        dropout=0.3 if dropout is None else float(dropout),
        backbone=inferred["img_backbone"],
        backbone_weights=None,
        freeze_backbone="all",  # the reference trains the backbone frozen
    )
    return model_config, notes


def convert_state(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Our state dict from the reference's; every key used, every shape checked."""
    expected = {our: reference_names(our) for our in target}
    wanted = {name for names in expected.values() for name in names}
    for keys, problem in ((wanted - state.keys(), "has no"), (state.keys() - wanted, "has")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            unexpected = " unexpected key" if problem == "has" else ""
            raise ReferenceImportError(
                f"the reference state dict {problem}{unexpected} {min(keys)}{more}"
            )
    converted = {}
    for our, names in expected.items():
        need = target[our].shape
        part_shape = (need[0] // len(names), *need[1:]) if len(names) > 1 else need
        for name in names:
            if state[name].shape != part_shape:
                raise ReferenceImportError(
                    f"{name} has shape {list(state[name].shape)}, expected {list(part_shape)} "
                    f"(for {our})"
                )
        parts = [state[name] for name in names]
        tensor = torch.cat(parts) if len(parts) > 1 else parts[0]
        converted[our] = tensor.detach().to(target[our].dtype).contiguous()
    return converted


def import_reference(
    checkpoint_path: str | Path,
    vocab_path: str | Path,
    *,
    threshold: float | None = None,
    input_size: int = 112,
    heads: int | None = None,
) -> ImportResult:
    """Convert a reference ``best_f1.pth`` (and its ``index,word`` vocabulary) to a Checkpoint.

    ``threshold`` defaults to the file's own (its ``--threshold``, at which its best metrics
    were measured; 0.5 if absent); ``input_size`` to the reference's fixed 112 px.
    """
    state, config, metrics = read_reference(checkpoint_path)
    if threshold is None:
        threshold = 0.5 if config.get("threshold") is None else float(config["threshold"])
    if not 0.0 <= threshold <= 1.0:
        raise ReferenceImportError(f"threshold {threshold} is not between 0 and 1")
    model_config, notes = infer_config(state, config, heads)
    vocabulary = Vocabulary.load(vocab_path)
    assert model_config.vocab_size is not None  # read from the embedding's rows
    if len(vocabulary) != model_config.vocab_size:
        raise ReferenceImportError(
            f"{vocab_path} has {len(vocabulary)} tags but the checkpoint's embedding has "
            f"{model_config.vocab_size + 1} rows ({model_config.vocab_size} tags + padding): "
            "use the vocabulary file the model was trained with"
        )
    model = build_model(model_config)
    model_state = convert_state(state, model.state_dict())
    model.load_state_dict(model_state)  # strict: proves the checkpoint loads
    checkpoint = Checkpoint(
        model_config=model_config,
        vocabulary=vocabulary,
        model_state=model_state,
        input_size=input_size,
        threshold=threshold,
        stage="imported",
        metrics=metrics,
        config={"imported_from": str(checkpoint_path), "reference_config": config},
    )
    return ImportResult(checkpoint, notes)
