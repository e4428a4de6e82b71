"""The loss registry and its up-front validation.

The losses themselves (and how they stay finite and keep their gradients under bf16) are in
:mod:`magneto.train.loss_terms`; this module names them (``LOSSES``), builds them from a name and
parameters (``build_loss``) and checks a config's choice without building (``check_loss``).
It imports no model code, so that :mod:`magneto.config` can check a loss cheaply; summing the
losses over a model's outputs is :mod:`magneto.train.total_loss`'s job.
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from magneto.errors import MagnetoError
from magneto.train.loss_names import LOSS_NAMES
from magneto.train.loss_terms import (
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


assert set(LOSS_NAMES) == set(LOSSES), "loss_names.LossName names exactly the registered losses"


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
