"""Entry point of the ``magneto`` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from magneto import __version__
from magneto.errors import MagnetoError
from magneto_cli import (
    data_commands,
    export_command,
    quickstart,
    reference_command,
    run_commands,
    serve_command,
    summarize_command,
)
from magneto_cli.common import OneLineParser


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="magneto",
        description="MAGNeto: keep the tags of an image that matter (Extractive Tags "
        "Summarization).",
    )
    parser.add_argument("--version", action="version", version=f"magneto {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    data_commands.register(subparsers)
    run_commands.register(subparsers)
    serve_command.register(subparsers)
    summarize_command.register(subparsers)
    reference_command.register(subparsers)
    export_command.register(subparsers)
    quickstart.register(subparsers)
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "value"
        return f"invalid {where}: {err.get('msg')}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="magneto: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("magneto: interrupted", file=sys.stderr)
        return 130
    except (MagnetoError, ValidationError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"magneto {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
