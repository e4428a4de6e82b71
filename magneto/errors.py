"""Exceptions the library raises for bad user input.

Every message is one readable line that says what is wrong and where, so that the CLI and the
service can show it to the user as is.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path


class MagnetoError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class ConfigError(MagnetoError):
    """A config file or override is invalid."""


class TrainingDiverged(MagnetoError):
    """The training loss stopped being a finite number: nothing more can be learnt from the
    run, so it stops instead of writing NaN epochs (the earlier checkpoints are kept)."""


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


class ImageAspectError(ImageError):
    """The image is too long and thin to be scored: scaling its shorter side up to the model's
    input would multiply the longer side too (an aspect-ratio bomb, or not a picture)."""


class WeightsError(MagnetoError):
    """Pretrained weights could not be obtained or do not fit the model."""


# -- our own words when ``torch.load(weights_only=True)`` refuses a file ----------------------
# Torch's message ends with advice to retry with ``weights_only=False``, which would run whatever
# code the file carries: we never do, so we never repeat it.
_BLOCKED_GLOBAL = re.compile(r"GLOBAL (\S+?)(?: |$)|but got <class '([^']+)'>")
_TORCH_ADVICE = ("weights_only", "Weights only load failed", "Check the documentation")


def blocked_global(exc: Exception) -> str | None:
    """The Python global a refused pickle referred to (``posix.system``), if that was why."""
    if isinstance(exc, pickle.UnpicklingError) and (match := _BLOCKED_GLOBAL.search(str(exc))):
        return (match.group(1) or match.group(2)).rstrip(".")
    return None


def unpickling_reason(exc: Exception) -> str:
    """Torch's reason for refusing a file, without its advice to unpickle anyway."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        tail = text.split("WeightsUnpickler error:")[-1].splitlines()
        lines = [t.strip() for t in tail if not any(advice in t for advice in _TORCH_ADVICE)]
        return next((line for line in lines if line), type(exc).__name__)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def refusal(path: Path, exc: Exception, what: str) -> str:
    """One line for a ``what`` file (checkpoint, backbone weights) torch refused or could not
    parse, naming the blocked global when a pickled reference to one was the reason."""
    blocked = blocked_global(exc)
    if blocked is not None:
        return (
            f"refusing {path}: it holds a pickled reference to the Python global {blocked}, "
            "and MAGNeto never unpickles code or objects (only tensors and plain values)"
        )
    reason = unpickling_reason(exc)
    if isinstance(exc, pickle.UnpicklingError):
        return f"cannot read {what} {path}: {reason} (not a file MAGNeto can read safely)"
    return f"cannot read {what} {path}: {reason}"
