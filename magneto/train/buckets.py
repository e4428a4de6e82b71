"""Length buckets: training batches of items with similar tag counts.

A batch is padded to its longest tag list, and attention costs grow with the square of that
length, so on data whose items carry anything from 4 to 96 tags, random batches spend a large
share of their tag slots on padding. Items are shuffled every epoch, cut into chunks of
``span`` batches, sorted by length within a chunk and batched; the batches are then shuffled.
Every batch still mixes items from across the data set, and the order comes from the epoch's
seeded generator, so a resumed run draws the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class LengthBuckets(Sampler[list[int]]):
    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        generator: torch.Generator,
        span: int = 50,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.span = span

    def batches(self) -> list[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).numpy()
        chunk = self.batch_size * self.span
        out: list[list[int]] = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            out += [
                part[i : i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size)
            ]
        shuffle = torch.randperm(len(out), generator=self.generator).tolist()
        return [out[i] for i in shuffle]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of tag slots that are padding when each batch is padded to its longest."""
    counts = np.asarray(lengths)
    slots = sum(len(b) * int(counts[list(b)].max()) for b in batches if len(b))
    return 1.0 - float(counts.sum()) / slots if slots else 0.0


def random_batches(count: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    order = np.random.default_rng(seed).permutation(count)
    return [order[i : i + batch_size].tolist() for i in range(0, count, batch_size)]
