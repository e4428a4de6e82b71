"""The pre-training task: tell an item's own tags (1) from random vocabulary tags (0)."""

from __future__ import annotations

import numpy as np

from magneto.data.augment import sample_absent


class RandomTagNoise:
    """Labels the original tags 1 and appends k ~ U{1..max(1, round(ratio * n))} absent ones.

    Used as a dataset ``tag_transform``; never exceeds ``max_len`` tags in total.
    """

    def __init__(self, vocab_size: int, ratio: float, max_len: int | None = None) -> None:
        self.vocab_size = vocab_size
        self.ratio = ratio
        self.max_len = max_len

    def __call__(
        self, tags: list[int], labels: list[int], rng: np.random.Generator
    ) -> tuple[list[int], list[int]]:
        upper = max(1, round(self.ratio * len(tags)))
        k = int(rng.integers(1, upper + 1))
        if self.max_len is not None:
            k = min(k, max(0, self.max_len - len(tags)))
        added = sample_absent(set(tags), self.vocab_size, k, rng)
        return list(tags) + added, [1] * len(tags) + [0] * len(added)
