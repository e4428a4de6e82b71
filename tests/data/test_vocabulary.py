from __future__ import annotations

import pytest

from magneto.data.vocabulary import Vocabulary, dedupe_tags, normalize_tag
from magneto.errors import DataError


def test_round_trip_and_padding_index(tmp_path, words):
    vocab = Vocabulary(words)
    path = tmp_path / "vocab.csv"
    vocab.save(path)
    assert path.read_text().splitlines()[:2] == ["index,word", "0,sky"]
    loaded = Vocabulary.load(path)
    assert loaded == vocab
    assert loaded.padding_index == len(words) == 10
    assert loaded.index("water") == 3
    assert loaded.word(3) == "water"


def test_rows_in_any_order(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("index,word\n1,b\n0,a\n2,c\n")
    assert Vocabulary.load(path).words == ["a", "b", "c"]


def test_normalisation_trims_casefolds_and_collapses():
    assert normalize_tag("  Sky ") == "sky"
    assert normalize_tag("New   York") == "new york"
    assert normalize_tag("\uff33\uff2b\uff39") == "sky"  # full-width SKY (NFKC)
    assert normalize_tag("STRASSE") == normalize_tag("straße")  # case-folding, not lower()


def test_dedupe_keeps_first_spelling_and_order():
    tags = dedupe_tags([" Sky", "sea", "SKY", "", "  ", "Sea ", "beach"])
    assert [t.text for t in tags] == ["Sky", "sea", "beach"]
    assert [t.key for t in tags] == ["sky", "sea", "beach"]


def test_lookup_is_normalised_and_unknown_reported(words):
    vocab = Vocabulary(words)
    assert vocab.get(" SKY ") == 0
    assert "Clouds" in vocab
    known, unknown = vocab.split_known(["Sky", "unicorn", "dog", "Zebra"])
    assert known == [0, 5]
    assert unknown == ["unicorn", "Zebra"]
    assert vocab.get("unicorn") is None


@pytest.mark.parametrize(
    ("content", "problem", "line"),
    [
        ("idx,word\n0,a\n", "must contain the columns index,word", 1),
        ("index,word\nx,a\n", "is not an integer", 2),
        ("index,word\n0,a\n0,b\n", "appears twice", 3),
        ("index,word\n0,a\n2,b\n", "exactly 0..1", None),
        ("index,word\n0,a\n1,\n", "empty word", 3),
        ("index,word\n0,Sky\n1,sky\n", "same tag after normalisation", None),
        ("index,word\n", "vocabulary is empty", None),
    ],
)
def test_bad_vocabulary_files(tmp_path, content, problem, line):
    path = tmp_path / "vocab.csv"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        Vocabulary.load(path)
    assert problem in str(info.value)
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        Vocabulary.load(tmp_path / "nope.csv")


def test_a_non_utf8_byte_names_its_line(tmp_path):
    path = tmp_path / "vocab.csv"
    path.write_bytes(b"index,word\n0,sky\n1,caf\xe9\n")
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xe9 at column 6\)") as info:
        Vocabulary.load(path)
    assert info.value.line == 3 and str(path) in str(info.value)


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    path = tmp_path / "vocab.csv"
    path.write_bytes("\ufeffindex,word\n0,café\n".encode())
    assert Vocabulary.load(path).get("café") == 0
