"""Tag vocabulary: the reference's ``index,word`` CSV, tag normalisation and lookup.

Tags are compared in a normalised form (Unicode NFKC, trimmed, inner whitespace collapsed,
case-folded) so that ``" Sky"``, ``"sky"`` and ``"SKY"`` are one tag, while the user's own
spelling is kept for output.
"""

from __future__ import annotations

import csv
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from magneto.data.text_files import file_problem, utf8_lines
from magneto.errors import DataError


def normalize_tag(tag: str) -> str:
    """Return the comparison key of a tag."""
    text = unicodedata.normalize("NFKC", tag)
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Tag:
    """One user tag: its spelling as given (trimmed) and its comparison key."""

    text: str
    key: str


def dedupe_tags(raw_tags: Iterable[str]) -> list[Tag]:
    """Normalise tags, drop empty ones and duplicates, keep the first spelling and the order."""
    seen: set[str] = set()
    tags: list[Tag] = []
    for raw in raw_tags:
        key = normalize_tag(raw)
        if not key or key in seen:
            continue
        seen.add(key)
        tags.append(Tag(text=" ".join(unicodedata.normalize("NFKC", raw).split()), key=key))
    return tags


class Vocabulary:
    """Maps tags to embedding indices; index ``len(vocab)`` is the padding index."""

    def __init__(self, words: Sequence[str]) -> None:
        self._words: list[str] = list(words)
        self._index: dict[str, int] = {}
        for i, word in enumerate(self._words):
            key = normalize_tag(word)
            if not key:
                raise ValueError(f"vocabulary entry {i} is empty")
            if key in self._index:
                raise ValueError(
                    f"vocabulary entries {self._index[key]} ({self._words[self._index[key]]!r}) "
                    f"and {i} ({word!r}) are the same tag after normalisation"
                )
            self._index[key] = i

    # -- size and indices -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._words)

    @property
    def padding_index(self) -> int:
        """Index used for padded positions: one past the last word."""
        return len(self._words)

    @property
    def words(self) -> list[str]:
        return list(self._words)

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, str) and normalize_tag(tag) in self._index

    def index(self, tag: str) -> int:
        """Index of a tag; raises KeyError for unknown tags."""
        return self._index[normalize_tag(tag)]

    def get(self, tag: str) -> int | None:
        """Index of a tag, or None when the vocabulary does not know it."""
        return self._index.get(normalize_tag(tag))

    def word(self, index: int) -> str:
        return self._words[index]

    def split_known(self, tags: Iterable[str]) -> tuple[list[int], list[str]]:
        """Indices of the known tags and the list of unknown ones, both in input order."""
        known: list[int] = []
        unknown: list[str] = []
        for tag in tags:
            idx = self.get(tag)
            if idx is None:
                unknown.append(tag)
            else:
                known.append(idx)
        return known, unknown

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._words == other._words

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read an ``index,word`` CSV (any row order; indices must be 0..n-1 exactly once)."""
        path = Path(path)
        problem = file_problem(path)
        if problem:
            raise DataError(path, None, f"vocabulary file {problem}")
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            reader = csv.DictReader(utf8_lines(handle, path))
            if reader.fieldnames is None or not {"index", "word"} <= set(reader.fieldnames):
                raise DataError(path, 1, "vocabulary header must contain the columns index,word")
            by_index: dict[int, str] = {}
            for row in reader:
                line = reader.line_num
                try:
                    idx = int(row["index"])
                except (TypeError, ValueError):
                    raise DataError(
                        path, line, f"index {row['index']!r} is not an integer"
                    ) from None
                word = (row["word"] or "").strip()
                if not word:
                    raise DataError(path, line, "empty word")
                if idx in by_index:
                    raise DataError(path, line, f"index {idx} appears twice")
                by_index[idx] = word
        if not by_index:
            raise DataError(path, None, "vocabulary is empty")
        if sorted(by_index) != list(range(len(by_index))):
            raise DataError(path, None, f"indices must be exactly 0..{len(by_index) - 1}")
        try:
            return cls([by_index[i] for i in range(len(by_index))])
        except ValueError as exc:
            raise DataError(path, None, str(exc)) from None

    def save(self, path: str | Path) -> None:
        """Write the ``index,word`` CSV atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "word"])
            for i, word in enumerate(self._words):
                writer.writerow([i, word])
        os.replace(tmp, path)
