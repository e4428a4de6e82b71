"""Argument parsing that reports bad input in one line, and shared helpers.

The command's contract: a usage error (an unknown flag, a bad flag value, a missing or
conflicting option) is one line ``magneto CMD: error: ...`` and exit status 2, exactly like
argparse's own; anything that goes wrong while running is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from magneto.errors import MagnetoError

RUNTIME_HELP = (
    "how the image trunk runs: auto times the runtimes this machine can run and keeps the "
    "fastest whose decisions match float32's; float32, bf16, onnx or int8 forces one"
)
DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:N"
EXIT_USAGE = 2
EXIT_FAILURE = 1


class UsageError(MagnetoError):
    """Raised by a handler for a wrong or missing option: reported like argparse's (status 2)."""


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``[default: X]`` to an option's help when it has a meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default is not None and action.default is not False
        shown = shown and action.default is not argparse.SUPPRESS
        if shown and action.option_strings and "%(default)" not in text and "[default" not in text:
            text = f"{text} [default: %(default)s]" if text else "[default: %(default)s]"
        return text


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one readable line and exit status 2.

    Every parser reports the arguments it does not know itself (``parse_args`` would leave a
    subcommand's to the top-level parser), so the message names the subcommand
    (``magneto train: error: unrecognized arguments: --lrr``); each also records its ``prog``
    so that the handler's errors carry the same prefix.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.set_defaults(cli_prog=self.prog)
        # The global flag works after the subcommand too: `magneto train ... -v`.
        self.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="debug logging, and the traceback of an error",
        )

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        assert parsed is not None  # argparse returns the namespace it filled
        return parsed, extras


def usage_error(prog: str, message: str) -> NoReturn:
    """Print the one-line usage error argparse would, and exit with status 2."""
    sys.stderr.write(f"{prog}: error: {message} (see {prog} --help)\n")
    raise SystemExit(EXIT_USAGE)


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def int_at_least(minimum: int):
    """An argparse type: an integer no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def unit_float(text: str) -> float:
    """An argparse type: a number between 0 and 1 (a threshold, a fraction)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number no smaller than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 0")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: any free port)."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most 65535")
    return value


def device_name(text: str) -> str:
    """An argparse type: ``auto`` or a device torch can name (``cpu``, ``cuda:1``, ...).

    Whether that device is present is checked when the command runs (status 1).
    """
    from magneto.devices import check_device

    try:
        return check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {exc}") from None


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--runtime`` and the images int8 calibrates on (predict, evaluate, summarize)."""
    from magneto.infer.runtimes.names import RUNTIME_CHOICES

    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help=RUNTIME_HELP)
    add_calibration_arguments(
        parser,
        "images to calibrate int8 on, once per trunk (an annotation file such as val.csv, "
        "or a folder; without it int8 is a candidate only when already cached",
    )


def add_calibration_arguments(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The images int8 ranges are calibrated on."""
    parser.add_argument(
        "--calibration",
        type=Path,
        metavar="PATH",
        help=help_text,
    )
    parser.add_argument(
        "--calibration-images",
        type=Path,
        metavar="DIR",
        help="folder the calibration file's image paths are under [default: the file's folder]",
    )
    parser.add_argument(
        "--calibration-items",
        type=positive_int,
        default=256,
        metavar="N",
        help="calibration images used",
    )


def calibration_from(args: argparse.Namespace) -> Any:
    """The :class:`~magneto.infer.runtimes.Calibration` the flags name, or None."""
    if args.calibration is None:
        if args.calibration_images is not None:
            raise UsageError("--calibration-images goes with --calibration FILE")
        return None
    from magneto.infer.runtimes.calibration import Calibration

    return Calibration(args.calibration, args.calibration_images, args.calibration_items)
