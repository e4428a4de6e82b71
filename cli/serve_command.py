"""``magneto serve``: the REST API (flags override ``MAGNETO_*`` environment variables)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from magneto.cli.common import DEVICE_HELP, UsageError, device_name
from magneto.cli.config_flags import field_checker, metavar_of, show_default
from magneto.config import validation_message


def register(subparsers: argparse._SubParsersAction) -> None:
    from magneto.service.settings import ServiceSettings

    cmd = subparsers.add_parser(
        "serve",
        help="serve a checkpoint over HTTP (REST API, docs at /docs, page at /)",
        description="Serve a checkpoint. Every flag can also be set as an environment "
        "variable MAGNETO_<FLAG> (e.g. MAGNETO_API_KEY); flags win. The checkpoint is read "
        "and checked before the server starts.",
    )
    for name, info in ServiceSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        description = info.description or (DEVICE_HELP if name == "device" else "")
        default = show_default(info.get_default(call_default_factory=True))
        env = f"env MAGNETO_{name.upper()}" + (f"; default: {default}" if default else "")
        help_text = f"{description} [{env}]".strip().replace("%", "%%")
        if info.annotation is bool:  # a switch, like every yes/no flag of magneto
            cmd.add_argument(
                flag,
                dest=f"svc__{name}",
                default=argparse.SUPPRESS,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
            continue
        cmd.add_argument(
            flag,
            dest=f"svc__{name}",
            default=argparse.SUPPRESS,
            type=device_name if name == "device" else field_checker(ServiceSettings, name),
            metavar=metavar_of(name, info.annotation),
            help=help_text,
        )
    cmd.set_defaults(handler=run_serve)


def check_servable(settings: Any) -> None:
    """Read the checkpoint and resolve the device now: a bad file is then one line and
    status 1, not a traceback from inside the server's start-up."""
    from magneto.devices import check_device, resolve_device
    from magneto.errors import MagnetoError
    from magneto.infer.checkpoint import load_checkpoint

    try:
        check_device(settings.device)  # a flag was checked when parsed; this is the variable
    except ValueError as exc:
        raise MagnetoError(f"MAGNETO_DEVICE: invalid value {settings.device!r}: {exc}") from None
    device = resolve_device(settings.device)
    load_checkpoint(settings.checkpoint)
    if settings.runtime not in ("auto", "bf16"):  # forced bf16 only warns
        from magneto.infer.runtimes.candidates import machine_problem

        if (problem := machine_problem(settings.runtime, device)) is not None:
            raise MagnetoError(f"--runtime {settings.runtime} cannot run here: {problem}")
    calibration = settings.calibration_images_set()
    if calibration is not None:
        calibration.image_paths()  # names images at all


def run_serve(args: argparse.Namespace) -> int:
    from magneto.infer.checkpoint import CheckpointError
    from magneto.service.server import bind_socket, serve
    from magneto.service.settings import ServiceSettings

    overrides = {k[len("svc__") :]: v for k, v in vars(args).items() if k.startswith("svc__")}
    try:
        settings = ServiceSettings(**overrides)
    except ValidationError as exc:
        ServiceSettings()  # the MAGNETO_* variables alone: their own error (status 1), if any
        raise UsageError(validation_message(exc)) from None  # else the flags conflict: 2
    if settings.checkpoint is None:
        raise UsageError("no checkpoint: pass --checkpoint or set MAGNETO_CHECKPOINT")
    if not Path(settings.checkpoint).is_file():  # said before a port in use is
        raise CheckpointError(f"checkpoint not found: {settings.checkpoint}")
    listen_socket = bind_socket(settings.host, settings.port)  # a port in use fails first
    try:
        check_servable(settings)
    except BaseException:
        listen_socket.close()
        raise
    serve(listen_socket=listen_socket, **overrides)
    return 0
