"""The model's measured pace: what the batcher's admission and Retry-After are computed from."""

from __future__ import annotations


class Pace:
    """A moving estimate of the model's seconds per item, from recent passes.

    Averages seconds and items separately (their ratio weighs a full pass more than a lone
    item). The first pass (the warm-up) pays for lazy set-up: it only gives a provisional,
    pessimistic figure, replaced outright by the next pass. Without it, a burst arriving
    before any measured pass would be let in whole (200 requests, then a 30 s backlog).
    """

    def __init__(self, smoothing: float = 0.3) -> None:
        self.smoothing = smoothing
        self._seconds: float | None = None
        self._items = 0.0
        self._provisional = True

    def observe(self, items: int, seconds: float) -> None:
        if self._seconds is None or self._provisional:
            self._provisional = self._seconds is None
            self._seconds, self._items = seconds, float(items)
            return
        a = self.smoothing
        self._seconds = (1 - a) * self._seconds + a * seconds
        self._items = (1 - a) * self._items + a * items

    @property
    def seconds_per_item(self) -> float | None:
        """None until a pass has been measured."""
        if self._seconds is None or self._items <= 0:
            return None
        return self._seconds / self._items
