"""Our own words when ``torch.load(weights_only=True)`` refuses a file.

Torch's message ends with advice to retry with ``weights_only=False``, which would run whatever
code the file carries: we never do, so we never repeat it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

_BLOCKED_GLOBAL = re.compile(r"GLOBAL (\S+?)(?: |$)|but got <class '([^']+)'>")
_TORCH_ADVICE = ("weights_only", "Weights only load failed", "Check the documentation")


def refusal(path: Path, exc: Exception, what: str) -> str:
    """One line for a ``what`` file (checkpoint, backbone weights) torch refused or could not
    parse, naming the blocked global when a pickled reference to one was the reason."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and (match := _BLOCKED_GLOBAL.search(text)):
        blocked = (match.group(1) or match.group(2)).rstrip(".")
        return (
            f"refusing {path}: it holds a pickled reference to the Python global {blocked}, "
            "and MAGNeto never unpickles code or objects (only tensors and plain values)"
        )
    if isinstance(exc, pickle.UnpicklingError):
        tail = text.split("WeightsUnpickler error:")[-1].splitlines()
        lines = [t.strip() for t in tail if not any(advice in t for advice in _TORCH_ADVICE)]
        reason = next((line for line in lines if line), type(exc).__name__)
        return f"cannot read {what} {path}: {reason} (not a file MAGNeto can read safely)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"cannot read {what} {path}: {first}"
