"""The loss registry, its up-front validation, and MAGNeto's total loss.

The losses themselves (and how they stay finite and keep their gradients under bf16) are in
:mod:`magneto.loss_terms`; this module names them (``LOSSES``), builds them from a name and
parameters (``build_loss``), checks a config's choice without building (``check_loss``), and
sums them over a model's outputs (``TotalLoss``).
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import torch
from torch import nn

from magneto.errors import MagnetoError
from magneto.loss_terms import (
    APLoss,
    ASLoss,
    BCEDiceLoss,
    BCELoss,
    DiceLoss,
    FocalLoss,
    LogProbs,
    MultiLabelLoss,
    SigmoidF1Loss,
    ZLPRLoss,
)
from magneto.model.architectures import ModelOutput

__all__ = [
    "LOSSES",
    "APLoss",
    "ASLoss",
    "BCEDiceLoss",
    "BCELoss",
    "DiceLoss",
    "FocalLoss",
    "LogProbs",
    "LossError",
    "MultiLabelLoss",
    "SigmoidF1Loss",
    "TotalLoss",
    "ZLPRLoss",
    "build_loss",
    "check_loss",
]

LOSSES: dict[str, type[MultiLabelLoss]] = {
    "bce": BCELoss,
    "dice": DiceLoss,
    "bce_dice": BCEDiceLoss,
    "focal": FocalLoss,
    "asl": ASLoss,
    "apl": APLoss,
    "sigmoidf1": SigmoidF1Loss,
    "zlpr": ZLPRLoss,
}


class LossError(MagnetoError, ValueError):
    """A loss name or parameter is invalid: one line naming the loss and what it accepts."""


def _parameters(cls: type[MultiLabelLoss]) -> dict[str, tuple[Any, Any]]:
    """name -> (type hint, default) of the loss's constructor parameters."""
    hints = get_type_hints(cls.__init__)
    return {
        name: (hints.get(name, Any), param.default)
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    }


def _type_name(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in get_args(hint))
    if get_origin(hint) is Literal:
        return " | ".join(repr(arg) for arg in get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _accepts(hint: Any, value: Any) -> bool:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_accepts(arg, value) for arg in get_args(hint))
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    return hint is Any


def _signature(key: str) -> str:
    params = _parameters(LOSSES[key])
    listed = ", ".join(
        f"{name}: {_type_name(hint)} = {default!r}" for name, (hint, default) in params.items()
    )
    return f"accepted: {listed or 'none'}"


def _lookup(name: Any) -> str:
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else None
    if key not in LOSSES:
        raise LossError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}")
    return key


def _validate(key: str, params: Any) -> None:
    if not isinstance(params, Mapping):
        raise LossError(
            f"loss {key}: parameters must be a mapping, not {type(params).__name__}; "
            + _signature(key)
        )
    accepted = _parameters(LOSSES[key])
    for name, value in params.items():
        if name not in accepted:
            raise LossError(f"loss {key} has no parameter {name!r}; {_signature(key)}")
        hint = accepted[name][0]
        if not _accepts(hint, value):
            raise LossError(
                f"loss {key}: {name} must be {_type_name(hint)}, not {value!r}; " + _signature(key)
            )


def build_loss(name: str, **params: Any) -> MultiLabelLoss:
    """Build a registered loss by name (``bce-dice`` and ``bce_dice`` are the same).

    An unknown name, an unknown parameter, a value of the wrong type (ints are fine for
    floats, None only where the loss accepts it, floats must be finite) or out of range raises
    :class:`LossError`, one line naming the loss and its parameters with their defaults.
    """
    key = _lookup(name)
    _validate(key, params)
    try:
        return LOSSES[key](**params)
    except (TypeError, ValueError) as exc:
        raise LossError(f"loss {key}: {exc}; {_signature(key)}") from None


def check_loss(name: str, params: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`LossError` now if ``build_loss(name, **params)`` would (config time)."""
    params = {} if params is None else params
    key = _lookup(name)
    _validate(key, params)
    build_loss(key, **params)  # range checks live in the constructors; losses are cheap


class TotalLoss(nn.Module):
    """L_total = L_g + L_it + L_t (paper eq. 5), each on its own output, all masked.

    ``loss`` is used for the final output L_g (and a baseline's single output); ``aux_loss``
    (default: ``loss``) for the stream outputs L_it and L_t. ``aux=False`` keeps only L_g.
    The loss follows the output, not the model: the gate-less pre-training model, which has
    only its two streams, gets L_u = L_it + L_t (paper section 5.2) with ``aux_loss`` whatever
    ``aux`` says.

    Stability: every stream output is scored from its logit. MAGNeto's gated output
    O = alpha O_it + (1 - alpha) O_t has no logit of its own, so it is scored from
    ``LogProbs.mixture``: log O = logaddexp(log alpha + logsigmoid(s_it), log(1 - alpha) +
    logsigmoid(s_t)) and log(1 - O) likewise with logsigmoid(-s), in float32 (alpha from the
    gate, cast to float32); its "logit" (ZLPR, sigmoidF1) is log O - log(1 - O), exact and
    finite. An output without stream logits falls back to ``output.final``'s probabilities.
    """

    def __init__(
        self, loss: MultiLabelLoss, aux: bool = True, aux_loss: MultiLabelLoss | None = None
    ) -> None:
        super().__init__()
        self.loss = loss
        self.aux_loss = loss if aux_loss is None else aux_loss
        self.aux = aux

    def forward(
        self, output: ModelOutput, targets: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        two_streams = output.tag is not None and output.image is not None
        if output.alpha is not None:  # MAGNeto: gated output, optionally both auxiliaries
            parts["final"] = self.loss(gated_output(output), targets, padding_mask)
        elif not two_streams:  # a baseline: its single output, with that stream's logits
            logits = output.tag_logits if output.tag is not None else output.image_logits
            parts["final"] = self.loss(output.final, targets, padding_mask, logits)
        if two_streams and (self.aux or output.alpha is None):
            assert output.image is not None and output.tag is not None
            parts["image"] = self.aux_loss(output.image, targets, padding_mask, output.image_logits)
            parts["tag"] = self.aux_loss(output.tag, targets, padding_mask, output.tag_logits)
        total = torch.stack(list(parts.values())).sum()
        return total, parts


def gated_output(output: ModelOutput) -> LogProbs | torch.Tensor:
    """The final output in float32 logs from the stream logits and the gate, when it has them."""
    if output.alpha is None or output.image_logits is None or output.tag_logits is None:
        return output.final
    return LogProbs.mixture(
        output.alpha,
        LogProbs.from_logits(output.image_logits),
        LogProbs.from_logits(output.tag_logits),
    )
