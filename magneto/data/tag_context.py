"""What the training tags say about a tag in its item's context: per-position features for
tag-only baselines (the synthetic profiles' signal report, ``magneto baseline``).

For each tag position: its concept's smoothed importance rate, how often it was seen, how
often it was important beside each of the item's other tags, how strongly it co-occurs with
them, and how many tags the item has. On the training set itself each item's own counts are
left out, so training features are as honest as those of unseen items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from magneto.data.annotations import Annotation
from magneto.data.vocabulary import Vocabulary


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


SMOOTH = 2.0  # pseudo-count pulling a rarely seen tag's rate towards the overall rate


def _smoothed(k: np.ndarray, n: np.ndarray, rate: float, smooth: float) -> np.ndarray:
    """``(k + smooth * rate) / (n + smooth)``: tag-prior's score, in one place."""
    return (k + smooth * rate) / (n + smooth)


def smoothed_rates(
    concept: np.ndarray, label: np.ndarray, vocab_size: int, smooth: float = SMOOTH
) -> np.ndarray:
    """Each vocabulary tag's rate of being important, ``(k + smooth * r) / (n + smooth)`` with
    ``r`` the overall rate: a tag seen ``n`` times, ``k`` of them important, is pulled towards
    ``r`` the less it was seen (a tag never seen gets ``r``). This is tag-prior's score."""
    n = np.bincount(concept, minlength=vocab_size).astype(float)
    k = np.bincount(concept, label, minlength=vocab_size)
    rate = float(np.mean(label)) if len(label) else 0.5
    return _smoothed(k, n, rate, smooth)


class TagPositions:
    """The tag positions of a set of items: item index, concept index and label."""

    def __init__(self, records: Sequence[Annotation], vocab: Vocabulary):
        item, concept, label = [], [], []
        for i, r in enumerate(records):
            for tag, y in zip(r.tags, r.labels or [0] * len(r.tags), strict=True):
                if (c := vocab.get(tag)) is not None:
                    item.append(i)
                    concept.append(c)
                    label.append(y)
        self.items = len(records)
        self.item = np.asarray(item, dtype=np.int64)
        self.concept = np.asarray(concept, dtype=np.int64)
        self.label = np.asarray(label, dtype=float)
        self.starts = np.searchsorted(self.item, np.arange(self.items + 1))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(position, other position) for every ordered pair of tags of one item."""
        firsts, seconds = [], []
        for i in range(self.items):
            pos = np.arange(self.starts[i], self.starts[i + 1])
            a, b = np.meshgrid(pos, pos, indexing="ij")
            off = a != b
            firsts.append(a[off])
            seconds.append(b[off])
        return np.concatenate(firsts), np.concatenate(seconds)


class TagContext:
    """Statistics of the training tags, turned into features of any item's tags."""

    def __init__(self, train: TagPositions, vocab_size: int, smooth: float = SMOOTH):
        self.v, self.smooth, self.items = vocab_size, smooth, train.items
        self.n = np.bincount(train.concept, minlength=vocab_size).astype(float)
        self.k = np.bincount(train.concept, train.label, minlength=vocab_size)
        self.rate = train.label.mean()
        a, b = train.pairs()
        keys = train.concept[a] * vocab_size + train.concept[b]
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.pair_n = np.bincount(inverse).astype(float)
        self.pair_k = np.bincount(inverse, train.label[a])

    def features(self, flat: TagPositions, own: bool) -> np.ndarray:
        """Rows of features per tag position; ``own``: ``flat`` is the training set itself,
        so each item's own counts are left out."""
        c, y, s = flat.concept, flat.label, self.smooth
        loo = 1.0 if own else 0.0
        n = self.n[c] - loo
        prior = (self.k[c] - loo * y + s * self.rate) / (n + s)
        a, b = flat.pairs()
        keys = c[a] * self.v + c[b]
        idx = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        found = self.keys[idx] == keys
        pn = np.where(found, self.pair_n[idx], 0.0) - loo
        pk = np.where(found, self.pair_k[idx], 0.0) - loo * y[a]
        pair_rate = (pk + s * prior[a]) / (pn + s)
        expected = (self.n[c[a]] - loo) * (self.n[c[b]] - loo) / max(self.items, 1)
        cohesion = np.log((pn + 0.5) / (expected + 0.5))
        m = len(c)
        others = np.maximum(np.bincount(a, minlength=m), 1)
        context = np.bincount(a, pair_rate, minlength=m) / others
        context[np.bincount(a, minlength=m) == 0] = prior[np.bincount(a, minlength=m) == 0]
        lengths = np.diff(flat.starts)[flat.item]
        return np.column_stack([
            logit(prior), np.log1p(n), logit(context),
            np.bincount(a, cohesion, minlength=m) / others, np.log(lengths),
        ])  # fmt: skip

    def prior(self, flat: TagPositions) -> np.ndarray:
        """Each position's concept's smoothed rate of being important in training."""
        c = flat.concept
        return _smoothed(self.k[c], self.n[c], self.rate, self.smooth)

    def state(self) -> dict[str, np.ndarray]:
        """Everything :meth:`from_state` needs, as plain arrays (saved without pickle)."""
        return {
            "shape": np.array([self.v, self.items], dtype=np.int64),
            "scalars": np.array([self.smooth, self.rate], dtype=np.float64),
            "n": self.n,
            "k": self.k,
            "keys": self.keys,
            "pair_n": self.pair_n,
            "pair_k": self.pair_k,
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> TagContext:
        context = cls.__new__(cls)
        context.v, context.items = (int(x) for x in state["shape"])
        context.smooth, context.rate = (float(x) for x in state["scalars"])
        for name in ("n", "k", "keys", "pair_n", "pair_k"):
            setattr(context, name, np.asarray(state[name]))
        return context
