"""Reading users' text files: a byte that is not UTF-8 is named by file, line and column."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from magneto.errors import DataError


def utf8_lines(handle: Iterable[str], path: Path) -> Iterator[str]:
    """The file's lines, each checked to be UTF-8 (open the file with
    ``errors="surrogateescape"``, so a bad byte survives as a lone surrogate and is reported
    with its line instead of failing the whole read)."""
    for number, line in enumerate(handle, start=1):
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as exc:
            byte = ord(line[exc.start]) - 0xDC00
            raise DataError(
                path,
                number,
                f"not UTF-8 text (byte 0x{byte:02x} at column {exc.start + 1}); "
                "save the file as UTF-8",
            ) from None
        yield line
