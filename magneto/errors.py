"""Exceptions the library raises for bad user input.

Every message is one readable line that says what is wrong and where, so that the CLI and the
service can show it to the user as is.
"""

from __future__ import annotations

from pathlib import Path


class MagnetoError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class DataError(MagnetoError):
    """A data file is malformed; names the file, the line (1-based) and the problem."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ImageError(MagnetoError):
    """An image could not be used (missing, corrupt, too large, not an image)."""

    def __init__(self, message: str, item_id: str | None = None) -> None:
        self.item_id = item_id
        super().__init__(message)


class ImageNotFoundError(ImageError):
    """The image file does not exist."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class WeightsError(MagnetoError):
    """Pretrained weights could not be obtained or do not fit the model."""
