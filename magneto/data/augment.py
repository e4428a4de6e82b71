"""TAD tag augmentation (paper section 5.1) and random outlier tags for evaluation.

TAD drops first, then adds. With ``U`` the number of unimportant tags of the original item:
drop ``k ~ U{0..floor(drop_ratio * U)}`` random unimportant tags, then add
``k ~ U{0..floor(add_ratio * U)}`` distinct vocabulary tags that are not among the item's
original tags, labelled 0. Important tags are never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from magneto.data.vocabulary import Vocabulary

T = TypeVar("T", int, str)


def _bound(ratio: float, count: int) -> int:
    """floor(ratio * count), robust to binary rounding (0.29 * 100 is 29, not 28)."""
    return math.floor(round(ratio * count, 9))


def sample_absent(
    present: set[int], vocab_size: int, k: int, rng: np.random.Generator
) -> list[int]:
    """``k`` distinct vocabulary indices not in ``present`` (fewer if the vocabulary runs out)."""
    available = vocab_size - len(present)
    k = min(k, available)
    if k <= 0:
        return []
    if k * 4 < available:
        # Rejection sampling: cheap when the vocabulary is large compared to k.
        chosen: list[int] = []
        taken = set(present)
        while len(chosen) < k:
            for idx in rng.integers(0, vocab_size, size=2 * (k - len(chosen))).tolist():
                if idx not in taken:
                    taken.add(idx)
                    chosen.append(idx)
                    if len(chosen) == k:
                        break
        return chosen
    candidates = np.setdiff1d(np.arange(vocab_size), np.fromiter(present, dtype=np.int64))
    return rng.choice(candidates, size=k, replace=False).tolist()


class TagAugmentation:
    """Seeded TAD augmentation over tag lists (vocabulary words or vocabulary indices)."""

    def __init__(
        self,
        add_ratio: float,
        drop_ratio: float,
        vocabulary: Vocabulary | Sequence[str],
        seed: int | None = None,
        max_len: int | None = None,
    ) -> None:
        if add_ratio < 0 or drop_ratio < 0:
            raise ValueError("add_ratio and drop_ratio must be >= 0")
        if drop_ratio > 1:
            raise ValueError("drop_ratio must be <= 1 (it bounds a share of the unimportant tags)")
        self.add_ratio = float(add_ratio)
        self.drop_ratio = float(drop_ratio)
        self.vocabulary = (
            vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary(list(vocabulary))
        )
        self.max_len = max_len
        self._rng = np.random.default_rng(seed)

    @property
    def enabled(self) -> bool:
        return self.add_ratio > 0 or self.drop_ratio > 0

    def __call__(
        self,
        tags: Sequence[T],
        labels: Sequence[int],
        rng: np.random.Generator | None = None,
    ) -> tuple[list[T], list[int]]:
        """Return augmented ``(tags, labels)``; tags keep their type (str or int)."""
        if len(tags) != len(labels):
            raise ValueError("tags and labels differ in length")
        rng = rng if rng is not None else self._rng
        as_words = bool(tags) and isinstance(tags[0], str)
        if as_words:
            unknown = [t for t in tags if t not in self.vocabulary]
            if unknown:
                raise ValueError(f"tag {unknown[0]!r} is not in the vocabulary")
            indices = [self.vocabulary.index(str(t)) for t in tags]
        else:
            indices = [int(t) for t in tags]
        unimportant = [i for i, y in enumerate(labels) if not y]
        n_unimportant = len(unimportant)

        # Drop first: k ~ U{0..floor(drop_ratio * U)} unimportant positions.
        n_drop = int(rng.integers(0, _bound(self.drop_ratio, n_unimportant) + 1))
        dropped = (
            set(rng.choice(unimportant, size=n_drop, replace=False).tolist()) if n_drop else set()
        )
        keep = [i for i in range(len(indices)) if i not in dropped]
        out_idx = [indices[i] for i in keep]
        out_labels = [int(labels[i]) for i in keep]

        # Then add: k ~ U{0..floor(add_ratio * U)} new tags, never one of the originals.
        n_add = int(rng.integers(0, _bound(self.add_ratio, n_unimportant) + 1))
        if self.max_len is not None:
            n_add = min(n_add, max(0, self.max_len - len(out_idx)))
        added = sample_absent(set(indices), len(self.vocabulary), n_add, rng)
        out_idx += added
        out_labels += [0] * len(added)

        if as_words:
            by_index = {idx: tag for idx, tag in zip(indices, tags, strict=True)}
            words = [by_index.get(i, self.vocabulary.word(i)) for i in out_idx]
            return words, out_labels  # type: ignore[return-value]
        return out_idx, out_labels  # type: ignore[return-value]


def add_outliers(
    indices: Sequence[int], k: int, vocab_size: int, rng: np.random.Generator
) -> tuple[list[int], list[bool]]:
    """Append ``k`` random vocabulary tags not on the item; return tags and an is-outlier mask.

    Used for the paper's outlier rate (Table 3): the share of items where any such tag is kept.
    """
    added = sample_absent(set(int(i) for i in indices), vocab_size, k, rng)
    return list(indices) + added, [False] * len(indices) + [True] * len(added)
