"""The model's vocabulary, sorted once so that a page or a prefix look-up costs O(log n + page).

``GET /v1/model/vocabulary`` serves it (the page offers it as a datalist while typing), so it
must stay cheap on the event loop even for a large-scale vocabulary.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from magneto.data.vocabulary import normalize_tag

_LAST = chr(0x10FFFF)  # sorts after every character: key + _LAST bounds all keys with a prefix


class VocabularyListing:
    """The tags in case-insensitive alphabetical order (the comparison key the model uses)."""

    def __init__(self, words: Sequence[str]) -> None:
        pairs = sorted((normalize_tag(word), word) for word in words)
        self._keys = [key for key, _ in pairs]
        self._words = [word for _, word in pairs]

    def __len__(self) -> int:
        return len(self._words)

    def page(self, prefix: str, offset: int, limit: int) -> tuple[int, list[str]]:
        """How many tags start with ``prefix`` (compared as the model compares tags), and the
        ``limit`` of them from ``offset`` on."""
        key = normalize_tag(prefix)
        start = bisect_left(self._keys, key)
        end = bisect_left(self._keys, key + _LAST) if key else len(self._keys)
        first = min(start + offset, end)
        return end - start, self._words[first : min(first + limit, end)]
