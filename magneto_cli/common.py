"""Argument parsing that reports bad input in one line, and shared helpers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

AMP_HELP = "auto: bf16 on CUDA, and for the backbone on CPUs with native bf16; off: float32"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one readable line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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
