"""Word2Vec tag vectors from annotation files: streaming corpus, training, coverage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gensim.models import KeyedVectors

from magneto.data.vocabulary import Vocabulary
from magneto.embeddings.word_vectors import (
    TagSentences,
    Word2VecSettings,
    train_tag_vectors,
    vector_coverage,
)
from magneto.errors import DataError

TOPICS = [[f"topic{k}tag{j}" for j in range(8)] for k in range(5)]


def write_corpus(path, items: int = 500, seed: int = 0) -> None:
    """Five topics of eight tags; an item carries three tags of one topic. On topic 0 items
    sky and sun always come together (and never elsewhere)."""
    rng = np.random.default_rng(seed)
    lines = ["item_id,tags"]
    for i in range(items):
        topic = i % len(TOPICS)
        tags = list(rng.choice(TOPICS[topic], size=3, replace=False))
        if topic == 0:
            tags += ["sky", "sun"]
        rng.shuffle(tags)
        lines.append(f'{i},"{",".join(tags)}"')
    path.write_text("\n".join(lines) + "\n")


def test_sentences_are_tokens_read_afresh_from_csv_and_jsonl_on_every_pass(tmp_path):
    labelled = tmp_path / "train.csv"
    labelled.write_text('item_id,tags,important_tags\n1," Sky,New  York,sky",Sky\n')
    unlabelled = tmp_path / "unlabeled.jsonl"
    unlabelled.write_text(json.dumps({"item_id": "u1", "tags": ["Dog", "cat"]}) + "\n")
    corpus = TagSentences([labelled, unlabelled])
    assert list(corpus) == [["sky", "new_york"], ["dog", "cat"]]
    assert corpus.items == 2 and corpus.error is None
    with labelled.open("a") as handle:  # a second pass sees the file as it is now
        handle.write('2,"sun",sun\n')
    assert list(corpus)[1] == ["sun"]
    assert "changed while training" in str(corpus.error)


def test_a_bad_record_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('item_id,tags\n1,"sky,sun"\n,"dog"\n')
    with pytest.raises(DataError, match=r"bad\.csv:3: item_id is empty"):
        list(TagSentences([path]))


def test_always_co_occurring_tags_get_the_most_similar_vectors(tmp_path):
    path = tmp_path / "tags.csv"
    write_corpus(path)
    settings = Word2VecSettings(vector_size=16, epochs=5, seed=3)
    trained = train_tag_vectors(TagSentences([path]), settings)
    wv = trained.vectors
    assert trained.items == 500 and trained.window == 5  # the longest list spans the window
    together = wv.similarity("sky", "sun")
    unrelated = [t for topic in TOPICS[1:] for t in topic]  # never on an item with sky or sun
    closest = max(wv.similarity(a, b) for a in ("sky", "sun") for b in unrelated)
    assert together > closest + 0.1, (together, closest)
    again = train_tag_vectors(TagSentences([path]), settings).vectors
    assert np.array_equal(wv["sky"], again["sky"])  # one worker: the same vectors per seed


def test_coverage_matches_case_and_spaces_and_lists_missing_tags():
    vectors = KeyedVectors(2)
    vectors.add_vectors(["sky", "new_york"], np.ones((2, 2), dtype=np.float32))
    coverage = vector_coverage(vectors, Vocabulary(["SKY", "New York", "unicorn"]))
    assert (coverage.found, coverage.total, coverage.missing) == (2, 3, ["unicorn"])
    assert coverage.percent == pytest.approx(200 / 3)
