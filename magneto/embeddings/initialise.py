"""Initialise the tag embedder from word vectors (gensim).

Tags that co-occur get nearby vectors, which gives the tag stream a head start. The vectors come
from a file (word2vec binary or text, or GloVe text, recognised by content: see
`magneto.embeddings.vector_files`), e.g. one written by ``magneto embeddings train``, or are trained
here on the prepared data (``embeddings: word2vec``). Vectors of d_model numbers are copied as they
are; longer ones are projected to d_model with PCA, shorter ones zero-padded. Words the vectors lack
keep their random initialisation; coverage is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from gensim.models import KeyedVectors

from magneto.data.items import load_items
from magneto.data.vocabulary import Vocabulary
from magneto.embeddings.vector_files import key_finder, load_vectors, tag_token
from magneto.embeddings.word_vectors import Word2VecSettings, train_tag_vectors
from magneto.model.architectures import TagModel

__all__ = ["init_embeddings", "init_tag_embedding", "load_vectors", "train_word2vec"]

log = logging.getLogger(__name__)


def train_word2vec(
    tag_lists: Sequence[Sequence[str]], vector_size: int, *, seed: int = 0, epochs: int = 20
) -> KeyedVectors:
    """Skip-gram over each item's tag list (a set: the window spans the whole list)."""
    sentences = [list(dict.fromkeys(tag_token(t) for t in tags)) for tags in tag_lists if tags]
    settings = Word2VecSettings(vector_size=vector_size, epochs=epochs, seed=seed)
    return train_tag_vectors(sentences, settings).vectors


def init_tag_embedding(
    embedding: torch.nn.Embedding, vocabulary: Vocabulary, vectors: KeyedVectors
) -> int:
    """Copy vectors into the embedding rows of known words; return how many were found."""
    find = key_finder(vectors)
    rows, found = [], []
    for i, word in enumerate(vocabulary.words):
        key = find(word)
        if key is not None:
            rows.append(i)
            found.append(vectors[key])
    if not rows:
        log.warning("none of the %d vocabulary words has a word vector", len(vocabulary))
        return 0
    matrix = np.asarray(found, dtype=np.float64)
    d_model = embedding.embedding_dim
    if matrix.shape[1] > d_model:  # PCA down to d_model: keeps the largest spreads
        centred = matrix - matrix.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        matrix = centred @ vt[:d_model].T
    if matrix.shape[1] < d_model:  # too few vectors for d_model components, or short vectors
        matrix = np.pad(matrix, ((0, 0), (0, d_model - matrix.shape[1])))
    with torch.no_grad():
        embedding.weight[rows] = torch.tensor(matrix, dtype=embedding.weight.dtype)
    log.info("word vectors for %d of %d tags", len(rows), len(vocabulary))
    return len(rows)


def init_embeddings(
    model: TagModel,
    source: str | None,
    vocabulary: Vocabulary,
    *,
    corpus: Sequence[tuple[Path, bool]] = (),
    seed: int = 0,
) -> int:
    """Initialise the model's tag embedder from ``source``: ``word2vec`` or a vectors file.

    ``word2vec`` trains on the tag lists of ``corpus``: annotation files, each with whether it
    is labelled (labels are not used, only read). Returns how many tags got a vector.
    """
    if not source:
        return 0
    if source == "word2vec":
        lists = []
        for path, labelled in corpus:
            items, _ = load_items(path, vocabulary, labelled=labelled)
            lists += [[vocabulary.word(i) for i in it.tags] for it in items]
        vectors = train_word2vec(lists, model.config.d_model, seed=seed)
    else:
        vectors = load_vectors(source)
    return init_tag_embedding(model.tag_embedder.embedding, vocabulary, vectors)
