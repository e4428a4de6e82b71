"""Train Word2Vec tag vectors on annotation files, and say how much of a vocabulary they cover.

Each item's tag list is one sentence, and since a tag list is a set, not a sequence, the
skip-gram window spans the whole list (``shrink_windows=False``: every pair of tags on an item
is a training pair, whatever their order). The files are streamed and re-read on every pass,
so a corpus of millions of items never sits in memory as one list.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gensim.models import KeyedVectors, Word2Vec
from gensim.models.callbacks import CallbackAny2Vec
from tqdm import tqdm

from magneto.data.annotation_files import iter_annotations
from magneto.data.vocabulary import Vocabulary
from magneto.embeddings.vector_files import key_finder, tag_token
from magneto.errors import DataError, MagnetoError


def _stable_hash(text: str) -> int:
    """gensim seeds each vector with hash(word); Python's str hash changes per process."""
    return zlib.crc32(text.encode("utf-8"))


class TagSentences:
    """Restartable corpus: each item's tags, as tokens, read afresh from the files every pass.

    The first pass checks every record (a bad one raises ``DataError`` naming file:line) and
    counts ``items``. gensim reads later passes in a thread of its own, where
    an exception would hang it; those stop early instead and leave the error in ``error``.
    """

    def __init__(self, paths: Sequence[str | Path]) -> None:
        if not paths:
            raise MagnetoError("no annotation files given")
        self.paths = [Path(p) for p in paths]
        self.items = 0
        self.passes = 0
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[list[str]]:
        first = self.passes == 0
        self.passes += 1
        if first:
            yield from self._read(record=True)
            return
        try:
            yield from self._read(record=False)
        except Exception as exc:  # re-raised by train_tag_vectors
            self.error = exc

    def _read(self, *, record: bool) -> Iterator[list[str]]:
        items = 0
        for path in self.paths:
            in_file = 0
            for _, annotation in iter_annotations(path, require_labels=False):
                in_file += 1
                yield list(dict.fromkeys(tag_token(t) for t in annotation.tags))
            if in_file == 0:
                raise DataError(path, None, "no items")
            items += in_file
        if record:
            self.items = items
        elif items != self.items:
            raise MagnetoError(
                f"the annotation files changed while training ({self.items} items, now {items})"
            )


@dataclass(frozen=True)
class Word2VecSettings:
    """Skip-gram settings; ``window=None`` spans the longest tag list (so every whole list)."""

    vector_size: int = 128
    epochs: int = 20
    min_count: int = 1
    window: int | None = None
    workers: int = 1  # 1: the same vectors for the same seed, run after run
    seed: int = 0
    # gensim's default (1e-3) drops most occurrences of any tag on over ~1 % of the items:
    # right for "the" in prose, wrong for "sky" among 81 tags.
    sample: float = 0.0


@dataclass(frozen=True)
class TrainedVectors:
    vectors: KeyedVectors
    items: int
    window: int


class _EpochBar(CallbackAny2Vec):
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def on_epoch_end(self, model: Word2Vec) -> None:
        self.bar.update(1)


class _Counted:
    """Counts the items and the longest list of any restartable corpus (a list, say)."""

    def __init__(self, corpus: Iterable[list[str]]) -> None:
        self.corpus = corpus
        self.items = 0
        self.longest = 0

    def __iter__(self) -> Iterator[list[str]]:
        items = longest = 0
        for sentence in self.corpus:
            items += 1
            longest = max(longest, len(sentence))
            yield sentence
        self.items, self.longest = items, longest


def train_tag_vectors(
    corpus: Iterable[list[str]], settings: Word2VecSettings, *, progress: bool = False
) -> TrainedVectors:
    """Skip-gram Word2Vec over a restartable corpus of token lists (e.g. `TagSentences`)."""
    counted = _Counted(corpus)
    model = Word2Vec(
        vector_size=settings.vector_size,
        window=settings.window or 1,  # the real default is known after the vocabulary scan
        min_count=settings.min_count,
        sg=1,
        seed=settings.seed,
        workers=settings.workers,
        hashfxn=_stable_hash,
        shrink_windows=False,
        sample=settings.sample,
    )
    scan = tqdm(counted, desc="reading tags", unit=" items", leave=False, disable=not progress)
    model.build_vocab(scan)
    scan.close()
    if counted.items == 0:
        raise MagnetoError("no tag lists to train word vectors on")
    if len(model.wv) == 0:
        raise MagnetoError(f"no tag occurs at least {settings.min_count} times (min_count)")
    model.window = settings.window or max(counted.longest, 1)
    with tqdm(
        total=settings.epochs, desc="training", unit="epoch", leave=False, disable=not progress
    ) as bar:
        model.train(
            corpus,
            total_examples=model.corpus_count,
            epochs=settings.epochs,
            callbacks=[_EpochBar(bar)],
        )
    error = getattr(corpus, "error", None)
    if error is not None:
        raise error
    return TrainedVectors(vectors=model.wv, items=counted.items, window=model.window)


@dataclass(frozen=True)
class Coverage:
    """Which vocabulary tags have a vector (matched as ``init_tag_embedding`` matches them)."""

    found: int
    total: int
    missing: list[str] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.found / self.total if self.total else 0.0


def vector_coverage(vectors: KeyedVectors, vocabulary: Vocabulary) -> Coverage:
    find = key_finder(vectors)
    missing = [word for word in vocabulary.words if find(word) is None]
    return Coverage(found=len(vocabulary) - len(missing), total=len(vocabulary), missing=missing)
