from __future__ import annotations

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from magneto.data.vocabulary import Vocabulary
from magneto.embeddings.initialise import init_tag_embedding, load_vectors, train_word2vec
from magneto.embeddings.vector_files import detect_format, save_vectors
from magneto.errors import MagnetoError
from magneto.train.metrics import choose_threshold


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
    assert detect_format(path) == ("word2vec-text" if header else "glove")
    vectors = load_vectors(path)
    assert vectors["sun"].tolist() == pytest.approx([0.9, 0.1, 0.0])
    vocab = Vocabulary(["sky", "dog", "cat"])
    embedding = torch.nn.Embedding(4, 5)  # larger than the vectors: zero-padded
    assert init_tag_embedding(embedding, vocab, vectors) == 2
    assert embedding.weight[1].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # dog, as it was
    with pytest.raises(MagnetoError, match="not found"):
        load_vectors(tmp_path / "none.txt")


def small_vectors() -> KeyedVectors:
    vectors = KeyedVectors(4)
    rng = np.random.default_rng(0)
    vectors.add_vectors(["sky", "sun", "new_york"], rng.normal(size=(3, 4)).astype(np.float32))
    return vectors


@pytest.mark.parametrize(
    ("written", "renamed", "fmt"),
    [
        ("v.bin", None, "word2vec-binary"),
        ("v.txt", None, "word2vec-text"),
        ("v.vec", None, "word2vec-text"),
        ("v.bin", "binary-named.txt", "word2vec-binary"),  # told by content, not by name
        ("v.txt", "text-named.bin", "word2vec-text"),
    ],
)
def test_saved_vectors_load_back_in_every_format_whatever_the_name(tmp_path, written, renamed, fmt):
    vectors = small_vectors()
    path = tmp_path / written
    assert save_vectors(vectors, path) == fmt
    if renamed:
        path = path.rename(tmp_path / renamed)
    assert detect_format(path) == fmt
    loaded = load_vectors(path)
    assert loaded.index_to_key == vectors.index_to_key
    assert np.allclose(loaded.vectors, vectors.vectors, atol=1e-6)
    assert not list(tmp_path.glob("*.tmp"))


def test_glove_file_with_a_word2vec_name_is_read_as_glove(tmp_path):
    path = tmp_path / "glove.6B.3d.bin"
    path.write_text("the 0.1 0.2 0.3\nNew_York -1 0 1.5e-1\n")
    assert detect_format(path) == "glove"
    vectors = load_vectors(path)
    assert vectors["New_York"].tolist() == pytest.approx([-1.0, 0.0, 0.15])
    embedding = torch.nn.Embedding(3, 3)
    assert init_tag_embedding(embedding, Vocabulary(["new york", "sky"]), vectors) == 1
    assert embedding.weight[0].tolist() == pytest.approx([-1.0, 0.0, 0.15])  # copied as is


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x1f\x8b\x08\x00rest", "gzip-compressed"),
        (b"2 3\n", "header but no vectors"),
        (b"2 3\nsky 1 0\nsun 0 1\n", "neither a text row of 3 numbers nor binary"),
        (b"2 3\nsky 1 0 0\n", "not a valid word2vec text file"),  # a row short
        (b"2 3\nsky \x00\x00\x80?\x00", "not a valid word2vec binary file"),  # truncated
        (b"<html><body>not found</body></html>\n", "not a word vectors file"),
        (b"glove 1 2 3\nbad 1 2\n", "not a valid GloVe text file"),
    ],
)
def test_bad_vectors_files_get_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "vectors.txt"
    path.write_bytes(content)
    with pytest.raises(MagnetoError, match=message) as info:
        load_vectors(path)
    text = str(info.value)
    assert str(path) in text and len(text.splitlines()) == 1


def test_vectors_of_d_model_numbers_are_copied_as_they_are():
    vectors = small_vectors()
    vocab = Vocabulary(["sun", "unicorn", "New York"])
    embedding = torch.nn.Embedding(len(vocab) + 1, 4, padding_idx=len(vocab))
    before = embedding.weight.detach().clone()
    assert init_tag_embedding(embedding, vocab, vectors) == 2
    assert torch.equal(embedding.weight[0], torch.tensor(vectors["sun"]))
    assert torch.equal(embedding.weight[2], torch.tensor(vectors["new_york"]))
    assert torch.equal(embedding.weight[1], before[1])  # unicorn: no vector
    assert torch.equal(embedding.weight[3], before[3])  # padding row untouched


def test_saving_to_an_unknown_or_pickle_suffix_is_refused(tmp_path):
    for name in ("v.kv", "v.model", "v.npy"):
        with pytest.raises(ValueError, match=r"\.bin"):
            save_vectors(small_vectors(), tmp_path / name)
    assert not list(tmp_path.iterdir())
