"""How much memory image decoding may hold at once, and giving it back afterwards.

Threads that decode side by side (the service's decode pool, a loader's threads) would
otherwise each hold a full-size image at the same moment, and a burst of large images adds
up. Each decode holds its estimated bytes of :data:`DECODE_BUDGET` while it runs; the others
wait. Once a large decode is done, :func:`give_back_freed_memory` asks glibc to return the
freed pages: each thread allocates from its own malloc arena, and glibc keeps what a large
image freed there, so without it the process would stay at its peak for good.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager

GIVE_BACK_ABOVE = 32 * 1024 * 1024  # decodes at least this large return their memory


class DecodeBudget:
    """Bytes that the decodes of one process may hold at once; the others wait their turn.

    A decode larger than the whole budget runs alone: no image is refused here, refusing is
    the pixel limit's job.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.held = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        nbytes = min(nbytes, self.limit)
        with self._changed:
            self._changed.wait_for(lambda: self.held + nbytes <= self.limit)
            self.held += nbytes
        try:
            yield
        finally:
            with self._changed:
                self.held -= nbytes
                self._changed.notify_all()
            if nbytes >= GIVE_BACK_ABOVE:
                give_back_freed_memory()


DECODE_BUDGET = DecodeBudget(256 * 1024 * 1024)


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc (macOS, musl): nothing to ask for
        return None


_MALLOC_TRIM = _malloc_trim()


def give_back_freed_memory() -> None:
    """Return the malloc heap's free pages to the OS (glibc only; elsewhere a no-op)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
