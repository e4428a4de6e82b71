"""Command-line flags generated from the run config, so every field is overridable.

``--lr 0.1`` becomes the override ``{"lr": "0.1"}``; fields of the nested model config are
flags too (``--d-model 64`` -> ``model.d_model``), and ``--model NAME`` picks the
architecture. Booleans get ``--x`` / ``--no-x``. pydantic then parses and validates.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any

from pydantic import BaseModel

from magneto.config import RunConfig
from magneto.model.config import ModelConfig

PREFIX = "cfg__"
ALIASES = {"model.architecture": "--model"}
HIDDEN = {"model.vocab_size"}


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        if info.annotation is ModelConfig:
            out += _fields(ModelConfig, f"{name}.")
        elif dotted not in HIDDEN:
            out.append((dotted, info))
    return out


def _metavar(annotation: Any) -> str:
    """``{a,b,INT}`` for literals (plus other members), else the type's name."""
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if is_union else (annotation,)
    members = members or (annotation,)
    choices: list[str] = []
    names: list[str] = []
    for member in members:
        if typing.get_origin(member) is typing.Literal:
            choices += [str(v) for v in typing.get_args(member)]
        elif member is type(None):
            continue
        elif typing.get_origin(member) is list:
            inner = typing.get_args(member)[0]
            names.append(
                "LIST"
                if typing.get_origin(inner) is not typing.Literal
                else ",".join(str(v) for v in typing.get_args(inner)) + ",..."
            )
        else:
            names.append(
                {int: "INT", float: "FLOAT", str: "TEXT", dict: "JSON"}.get(
                    typing.get_origin(member) or member, "VALUE"
                )
            )
    if choices:
        return "{" + ",".join(choices + names) + "}"
    return names[0] if len(names) == 1 else "VALUE"


def add_config_flags(parser: argparse.ArgumentParser, model: type[BaseModel] = RunConfig) -> None:
    group = parser.add_argument_group("config fields (override the --config file)")
    for dotted, info in _fields(model):
        flag = ALIASES.get(dotted, "--" + dotted.split(".")[-1].replace("_", "-"))
        dest = PREFIX + dotted.replace(".", "__")
        default = info.get_default(call_default_factory=True)
        help_text = (info.description or "").replace("%", "%%")
        help_text = f"{help_text} [default: {default}]" if help_text else f"[default: {default}]"
        if _is_bool(info.annotation):
            group.add_argument(
                flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(
                flag,
                dest=dest,
                default=argparse.SUPPRESS,
                metavar=_metavar(info.annotation),
                help=help_text,
            )


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line, as dotted overrides."""
    return {
        key[len(PREFIX) :].replace("__", "."): value
        for key, value in vars(args).items()
        if key.startswith(PREFIX)
    }
