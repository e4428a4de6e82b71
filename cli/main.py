"""Entry point of the ``magneto`` command.

Every failure is one line on stderr, ``magneto CMD: error: ...``, and a documented exit
status (see ``EPILOG``); ``magneto -v CMD ...`` adds the traceback.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from pydantic import ValidationError

from magneto import __version__
from magneto.cli import (
    baseline_command,
    data_commands,
    embeddings_command,
    export_command,
    predict_command,
    quickstart,
    reference_command,
    run_commands,
    serve_command,
    summarize_command,
)
from magneto.cli.common import EXIT_FAILURE, OneLineParser, UsageError, usage_error
from magneto.config import validation_message
from magneto.errors import MagnetoError

EPILOG = """\
exit status:
  0    success
  1    the command failed while running: a file missing, unreadable, corrupt or of the
       wrong kind, bad data, a device that is not there (one line on stderr)
  2    usage error: an unknown flag, a bad flag value, a missing or conflicting option
       (one line on stderr, like argparse's own)
  130  interrupted (Ctrl-C)

`magneto COMMAND --help` lists a command's flags; `magneto -v COMMAND ...` adds debug
logging and the error's traceback."""

# Errors about the user's input or environment: their message is the whole story.
EXPECTED = (MagnetoError, ValidationError, OSError, ValueError, csv.Error)


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="magneto",
        description="MAGNeto: keep the tags of an image that matter (Extractive Tags "
        "Summarization).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"magneto {__version__}")
    parser.set_defaults(verbose=False)
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    data_commands.register(subparsers)
    run_commands.register(subparsers)
    baseline_command.register(subparsers)
    predict_command.register(subparsers)
    serve_command.register(subparsers)
    summarize_command.register(subparsers)
    reference_command.register(subparsers)
    export_command.register(subparsers)
    embeddings_command.register(subparsers)
    quickstart.register(subparsers)
    return parser


def one_line(exc: BaseException) -> str:
    """The first line of an error's message, worded for the user."""
    if isinstance(exc, ValidationError):
        return validation_message(exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="magneto: %(message)s",
        stream=sys.stderr,
    )
    # gensim narrates every load and epoch at INFO: only with -v.
    logging.getLogger("gensim").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    prog = args.cli_prog
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("magneto: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `magneto predict ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except UsageError as exc:
        usage_error(prog, one_line(exc))
    except EXPECTED as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug still gets one line; -v shows where
        if args.verbose:
            traceback.print_exc()
        print(
            f"{prog}: error: {type(exc).__name__}: {one_line(exc)} "
            "(unexpected; run `magneto -v ...` for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
