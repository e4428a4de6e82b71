"""Command-line flags generated from the run config, so every field is overridable.

``--lr 0.1`` becomes the override ``{"lr": "0.1"}``; fields of the nested model config are
flags too (``--d-model 64`` -> ``model.d_model``), and ``--model NAME`` picks the
architecture. Booleans get ``--x`` / ``--no-x``. Each value is checked against its field as
the flags are parsed, so a bad one is a usage error naming the flag (status 2); the whole
config is validated once the ``--config`` file is merged in.

A field that only one stage reads (``--tad-add`` for train, ``--noise-ratio`` for pretrain)
is a flag of that stage only; on the other it is hidden and rejected with a message that
names the stage it belongs to.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from magneto.config import DEFAULT_BACKBONE_WEIGHTS, RunConfig
from magneto.model.config import ModelConfig

PREFIX = "cfg__"
ALIASES = {"model.architecture": "--model"}
HIDDEN = {"model.vocab_size"}
# Fields one stage reads and the other ignores (pre-training always builds the gate-less
# MAGNeto, has no threshold, no TAD and starts from scratch).
STAGE_ONLY = {
    "model.architecture": "train",
    "model.gating": "train",
    "model.gate_d_ff": "train",
    "model.tag_bias": "train",
    "aux": "train",
    "tad_add": "train",
    "tad_drop": "train",
    "threshold": "train",
    "init_from": "train",
    "pretrain_epochs": "pretrain",
    "pretrain_lr": "pretrain",
    "noise_ratio": "pretrain",
    "pretrain_val_fraction": "pretrain",
    "pretrain_sources": "pretrain",
}


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        if info.annotation is ModelConfig:
            out += _fields(ModelConfig, f"{name}.")
        elif dotted not in HIDDEN:
            out.append((dotted, info))
    return out


def field_metavar(annotation: Any) -> str:
    """``{a,b,INT}`` for literals (plus other members), ``{a,b},...`` for comma lists,
    else the type's name."""
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
                "ITEM,..."
                if typing.get_origin(inner) is not typing.Literal
                else "{" + ",".join(str(v) for v in typing.get_args(inner)) + "},..."
            )
        else:
            names.append(
                {
                    int: "N",
                    float: "FLOAT",
                    str: "TEXT",
                    dict: "JSON",
                    bool: "{true,false}",
                    Path: "PATH",
                    SecretStr: "KEY",
                }.get(typing.get_origin(member) or member, "VALUE")
            )
    if choices:
        return "{" + ",".join(choices + names) + "}"
    return names[0] if len(names) == 1 else "VALUE"


# Text fields that are paths or names of something: what to write instead of TEXT.
FIELD_METAVARS = {
    "data": "DIR",
    "images": "DIR",
    "out": "DIR",
    "feature_cache_dir": "DIR",
    "init_from": "FILE",
    "embeddings": "{word2vec,FILE,none}",
    "model.backbone_weights": "{imagenet,none,FILE}",
    "device": "DEVICE",
    "checkpoint": "FILE",
    "host": "HOST",
    "tracking_uri": "URI",
    "experiment": "NAME",
}


def metavar_of(dotted: str, annotation: Any) -> str:
    """The metavar of a config or settings field: its role where it has one, else its type."""
    return FIELD_METAVARS.get(dotted) or field_metavar(annotation)


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def flag_name(dotted: str) -> str:
    return ALIASES.get(dotted, "--" + dotted.split(".")[-1].replace("_", "-"))


def show_default(value: Any, switch: str | None = None) -> str | None:
    """A default as the user would type it (a boolean as ``switch`` or its ``--no-`` form
    when it is one), or None when there is nothing to show."""
    if value is None:
        return None
    if isinstance(value, bool):
        if switch is None:
            return str(value).lower()
        return switch if value else "--no-" + switch.removeprefix("--")
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "(empty)"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _nested(path: Sequence[str], value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        data = {key: data}
    return data


def field_errors(exc: ValidationError, path: Sequence[str]) -> list[str]:
    """The messages of ``exc`` about the field at ``path`` (union members' messages joined)."""
    messages = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err.get("loc", ()))
        if loc[: len(path)] == tuple(path):
            messages.append(str(err.get("msg")).removeprefix("Value error, "))
    return list(dict.fromkeys(messages))


def field_checker(model: type[BaseModel], dotted: str) -> Callable[[str], str]:
    """An argparse type that validates one field of ``model`` on its own and keeps the text.

    Checks across fields (a loss and its parameters) cannot be judged on one value; they are
    made when the whole config is built.
    """
    path = dotted.split(".")
    field = model.model_fields.get(path[0]) if len(path) == 1 else None
    # A secret (the API key) is never echoed: the message ends up in terminals and logs.
    secret = field is not None and SecretStr in (
        field.annotation,
        *typing.get_args(field.annotation),
    )

    def check(text: str) -> str:
        try:
            model.model_validate(_nested(path, text))
        except ValidationError as exc:
            messages = field_errors(exc, path)
            if messages:
                raise argparse.ArgumentTypeError(
                    f"invalid value {'(hidden)' if secret else repr(text)}: "
                    f"{'; or '.join(messages)}"
                ) from None
        except Exception:  # a cross-field check: judged with the whole config
            pass
        return text

    check.__name__ = dotted
    return check


class _OtherStage(argparse.Action):
    """A flag of the other stage: hidden here, and named as such when used."""

    def __init__(self, option_strings: list[str], dest: str, stage: str, **kwargs: Any) -> None:
        self.stage = stage
        kwargs.update(nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **kwargs: Any) -> None:
        flag = kwargs.get("option_string") or self.option_strings[0]
        parser.error(f"{flag} is an option of 'magneto {self.stage}' only")


def add_config_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel] = RunConfig, stage: str | None = None
) -> None:
    """A flag per field of ``model``; with ``stage``, the other stage's fields are rejected."""
    group = parser.add_argument_group("config fields (override the --config file)")
    for dotted, info in _fields(model):
        flag = flag_name(dotted)
        dest = PREFIX + dotted.replace(".", "__")
        is_bool = info.annotation is bool
        owner = STAGE_ONLY.get(dotted)
        if stage is not None and owner not in (None, stage):
            flags = [flag, "--no-" + flag.removeprefix("--")] if is_bool else [flag]
            parser.add_argument(*flags, dest=dest, action=_OtherStage, stage=owner)
            continue
        help_text = (info.description or "").replace("%", "%%")
        if _is_list(info.annotation):
            help_text = f"{help_text} (comma-separated)".strip()
        default = info.get_default(call_default_factory=True)
        if model is RunConfig and dotted == "model.backbone_weights":
            default = DEFAULT_BACKBONE_WEIGHTS  # a run's default, not a bare ModelConfig's
        default = show_default(default, flag if is_bool else None)
        if default is not None:
            default = default.replace("%", "%%")
            help_text = f"{help_text} [default: {default}]".strip()
        if is_bool:
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
                type=field_checker(model, dotted),
                metavar=metavar_of(dotted, info.annotation),
                help=help_text,
            )


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line, as dotted overrides."""
    return {
        key[len(PREFIX) :].replace("__", "."): value
        for key, value in vars(args).items()
        if key.startswith(PREFIX)
    }
