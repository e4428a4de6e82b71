from __future__ import annotations

import numpy as np
import pytest
import torch

from magneto.embeddings import init_tag_embedding, load_vectors, train_word2vec
from magneto.errors import MagnetoError
from magneto.metrics import choose_threshold
from magneto.vocabulary import Vocabulary


def test_threshold_maximises_per_item_f1():
    scores = [np.array([0.9, 0.35, 0.2]), np.array([0.4, 0.1]), np.array([0.8, 0.3])]
    targets = [np.array([1, 1, 0]), np.array([1, 0]), np.array([1, 0])]
    threshold, f1 = choose_threshold(scores, targets)
    # Any threshold in (0.30, 0.35] keeps exactly the important tags.
    assert 0.3 < threshold <= 0.35 and f1 == pytest.approx(1.0)
    threshold, f1 = choose_threshold([np.array([0.2, 0.2])], [np.array([0, 0])])
    assert f1 == 1.0 and threshold > 0.2  # keeping nothing is right here
    with pytest.raises(ValueError):
        choose_threshold([], [])


def test_word2vec_puts_co_occurring_tags_together_and_initialises_the_embedder():
    groups = [["sky", "sun", "clouds"], ["dog", "cat", "toy"]]
    rng = np.random.default_rng(0)
    lists = [list(rng.permutation(groups[i % 2])) for i in range(400)]
    vectors = train_word2vec(lists, 16, seed=3)
    again = train_word2vec(lists, 16, seed=3)
    assert np.allclose(vectors["sky"], again["sky"])  # deterministic per seed
    assert vectors.similarity("sky", "sun") > vectors.similarity("sky", "dog")
    vocab = Vocabulary(["Sky", "sun", "clouds", "dog", "cat", "toy", "unicorn"])
    embedding = torch.nn.Embedding(len(vocab) + 1, 8, padding_idx=len(vocab))
    unknown_row = embedding.weight[6].detach().clone()
    assert init_tag_embedding(embedding, vocab, vectors) == 6
    assert torch.equal(embedding.weight[6], unknown_row)  # no vector: random init kept
    w = embedding.weight.detach()
    cos = torch.nn.functional.cosine_similarity
    assert cos(w[0], w[1], dim=0) > cos(w[0], w[3], dim=0)


@pytest.mark.parametrize("header", [True, False])
def test_vectors_files_in_word2vec_and_glove_format(tmp_path, header):
    lines = ["sky 1 0 0", "sun 0.9 0.1 0", "dog 0 0 1"]
    path = tmp_path / "vectors.txt"
    path.write_text(("3 3\n" if header else "") + "\n".join(lines) + "\n")
    vectors = load_vectors(path)
    assert vectors["sun"].tolist() == pytest.approx([0.9, 0.1, 0.0])
    vocab = Vocabulary(["sky", "dog", "cat"])
    embedding = torch.nn.Embedding(4, 5)  # larger than the vectors: zero-padded
    assert init_tag_embedding(embedding, vocab, vectors) == 2
    with pytest.raises(MagnetoError, match="not found"):
        load_vectors(tmp_path / "none.txt")
