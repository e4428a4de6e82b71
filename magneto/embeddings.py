"""Word vectors for the tag embedder (gensim): train Word2Vec on tag lists, or load vectors.

Tags that co-occur get nearby vectors, which gives the tag stream a head start. Loaded
vectors may be in word2vec format (text with a header line, or binary) or GloVe text (no
header). When their size differs from d_model they are projected with PCA (or zero-padded);
either way they are rescaled to the embedder's initial spread. Words the vectors lack keep
their random initialisation; coverage is reported.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from gensim.models import KeyedVectors, Word2Vec

from magneto.errors import MagnetoError
from magneto.vocabulary import Vocabulary, normalize_tag

log = logging.getLogger(__name__)


def _stable_hash(text: str) -> int:
    """gensim seeds each vector with hash(word); Python's str hash changes per process."""
    return zlib.crc32(text.encode("utf-8"))


def train_word2vec(
    tag_lists: Sequence[Sequence[str]], vector_size: int, *, seed: int = 0, epochs: int = 20
) -> KeyedVectors:
    """Skip-gram over each item's tag list (a set: the window spans the whole list)."""
    sentences = [[normalize_tag(t) for t in tags] for tags in tag_lists if len(tags) > 0]
    if not sentences:
        raise MagnetoError("no tag lists to train word vectors on")
    window = max(len(s) for s in sentences)
    model = Word2Vec(
        sentences=sentences,
        vector_size=vector_size,
        window=window,
        min_count=1,
        sg=1,
        seed=seed,
        workers=1,
        epochs=epochs,
        hashfxn=_stable_hash,
    )
    return model.wv


def load_vectors(path: str | Path) -> KeyedVectors:
    """Load word2vec (text or ``.bin``) or GloVe (text without header) vectors."""
    path = Path(path)
    if not path.is_file():
        raise MagnetoError(f"word vectors file not found: {path}")
    binary = path.suffix == ".bin"
    try:
        if binary:
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline().split()
        has_header = len(first) == 2 and all(p.isdigit() for p in first)
        return KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not has_header)
    except (ValueError, UnicodeDecodeError, EOFError) as exc:
        raise MagnetoError(f"cannot read word vectors {path}: {exc}".splitlines()[0]) from None


def init_tag_embedding(
    embedding: torch.nn.Embedding, vocabulary: Vocabulary, vectors: KeyedVectors
) -> int:
    """Copy vectors into the embedding rows of known words; return how many were found."""
    lookup = {normalize_tag(k): k for k in vectors.index_to_key}
    rows, found = [], []
    for i, word in enumerate(vocabulary.words):
        key = lookup.get(normalize_tag(word))
        if key is not None:
            rows.append(i)
            found.append(vectors[key])
    if not rows:
        log.warning("none of the %d vocabulary words has a word vector", len(vocabulary))
        return 0
    matrix = np.asarray(found, dtype=np.float64)
    d_model = embedding.embedding_dim
    matrix = matrix - matrix.mean(0)
    if matrix.shape[1] > d_model:  # PCA down to d_model
        _, _, vt = np.linalg.svd(matrix, full_matrices=False)
        basis = vt[:d_model]
        matrix = matrix @ basis.T
    if matrix.shape[1] < d_model:
        matrix = np.pad(matrix, ((0, 0), (0, d_model - matrix.shape[1])))
    scale = float(embedding.weight.detach().std()) / max(float(matrix.std()), 1e-8)
    with torch.no_grad():
        embedding.weight[rows] = torch.tensor(matrix * scale, dtype=embedding.weight.dtype)
    log.info("word vectors for %d of %d tags", len(rows), len(vocabulary))
    return len(rows)


def init_embeddings(model: torch.nn.Module, config, vocabulary: Vocabulary) -> int:
    """Apply ``config.embeddings`` (``word2vec`` or a vectors file) to the model's tag embedder.

    ``word2vec`` trains on the tag lists of the prepared ``train.csv`` and ``unlabeled.csv``.
    """
    if not config.embeddings:
        return 0
    if config.embeddings == "word2vec":
        from magneto.prepared import data_dir, load_items

        root = data_dir(config)
        lists = []
        for name in ("train.csv", "unlabeled.csv"):
            if (root / name).is_file():
                items, _ = load_items(root / name, vocabulary, labelled=name == "train.csv")
                lists += [[vocabulary.word(i) for i in it.tags] for it in items]
        vectors = train_word2vec(lists, config.model.d_model, seed=config.seed)
    else:
        vectors = load_vectors(config.embeddings)
    return init_tag_embedding(model.tag_embedder.embedding, vocabulary, vectors)
