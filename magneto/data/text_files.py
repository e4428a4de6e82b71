"""Reading users' files: what is not a regular file is refused before a byte is read (a FIFO
would block forever, ``/dev/zero`` never ends), and a byte that is not UTF-8 is named by file,
line and column."""

from __future__ import annotations

import os
import stat
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


def file_problem(path: str | Path, max_bytes: int | None = None) -> str | None:
    """Why ``path`` cannot be read as a file, or None: it is missing, a directory, not a
    regular file (a FIFO, a device, a socket), or larger than ``max_bytes``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return exc.strerror or "cannot be read"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a FIFO, a device or a socket)"
    if max_bytes is not None and info.st_size > max_bytes:
        return f"is {info.st_size} bytes, more than the limit of {max_bytes}"
    return None
