from __future__ import annotations

import json

import pytest

from magneto.data.annotation_files import read_annotations, write_annotations
from magneto.errors import DataError


def _write(path, text):
    path.write_text(text)
    return path


def test_both_csv_forms_and_jsonl_agree(tmp_path):
    important = _write(
        tmp_path / "a.csv",
        'item_id,tags,important_tags\n1,"sky,Clouds,sun",sky\n2,dog,dog\n',
    )
    label = _write(tmp_path / "b.csv", 'item_id,tags,label\n1,"sky,Clouds,sun","1,0,0"\n2,dog,1\n')
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(
        json.dumps({"item_id": "1", "tags": ["sky", "Clouds", "sun"], "label": [1, 0, 0]})
        + "\n\n"
        + json.dumps({"item_id": 2, "tags": "dog", "important_tags": ["dog"]})
        + "\n"
    )
    a, b, c = (read_annotations(p) for p in (important, label, jsonl))
    for records in (a, b, c):
        assert [r.item_id for r in records] == ["1", "2"]
        assert records[0].tags == ("sky", "Clouds", "sun")
        assert records[0].labels == (1, 0, 0)
        assert records[0].important_tags == ("sky",)
        assert records[0].image_path == "1.jpg"


def test_duplicate_tags_are_merged_keeping_first_spelling(tmp_path):
    path = _write(tmp_path / "a.csv", 'item_id,tags,label\n7,"Sky, sky ,sea","1,1,0"\n')
    (record,) = read_annotations(path)
    assert record.tags == ("Sky", "sea")
    assert record.labels == (1, 0)


def test_image_column_and_unlabelled_files(tmp_path):
    path = _write(tmp_path / "u.csv", "item_id,tags,image\n5,sky,cat\\0001_5.jpg\n")
    (record,) = read_annotations(path, require_labels=False)
    assert record.labels is None
    assert record.image_path == "cat/0001_5.jpg"
    with pytest.raises(DataError, match="no important_tags or label"):
        read_annotations(path)


def test_write_then_read_round_trip(tmp_path):
    source = _write(
        tmp_path / "a.csv",
        'item_id,tags,label,image\n1,"sky,sun","0,1",x/1.jpg\n2,dog,1,\n',
    )
    records = read_annotations(source)
    out = tmp_path / "out.csv"
    assert write_annotations(out, records) == 2
    assert out.read_text().splitlines()[0] == "item_id,tags,important_tags,label,image"

    def fields(rs):
        return [(r.item_id, r.tags, r.labels, r.image) for r in rs]

    assert fields(read_annotations(out)) == fields(records)
    assert records[1].origin == f"{source}:3"
    assert not (tmp_path / "out.csv.tmp").exists()


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ('item_id,tags,label\n1,"a,b",1\n', 2, "label has 1 values but there are 2 tags"),
        ('item_id,tags,label\n1,"a,b","1,2"\n', 2, "label value '2' is not 0 or 1"),
        ('item_id,tags,important_tags\n1,a,a\n2,"a,b",c\n', 3, "important tag 'c' is not among"),
        ("item_id,tags,important_tags\n1,,\n", 2, "tags are empty"),
        ('item_id,tags,important_tags\n1," , ",\n', 2, "tags are empty"),
        ("item_id,tags,important_tags\n,a,a\n", 2, "item_id is empty"),
        ("item_id,tags,important_tags\n1,a,a\n1,b,b\n", 3, "already appears on line 2"),
        ('item_id,tags,label,important_tags\n1,"a,b","1,0",b\n', 2, "disagree"),
        ('item_id,tags,label\n1,"a,A","1,0"\n', 2, "appears twice with different labels"),
        ("item_id,tags,important_tags,image\n1,a,a,/etc/passwd\n", 2, "must be relative"),
        ("item_id,tags,important_tags,image\n1,a,a,../../x.jpg\n", 2, "must be relative"),
        ("item_id,tags,important_tags,image\n1,a,a,C:\\x.jpg\n", 2, "must be relative"),
        ("item_id,tags,important_tags\n1,a,a,extra\n", 2, "more fields than the header"),
        ("id,tags\n1,a\n", 1, "header must contain the columns item_id and tags"),
    ],
)
def test_validation_errors_name_file_line_and_problem(tmp_path, content, line, problem):
    path = _write(tmp_path / "bad.csv", content)
    with pytest.raises(DataError) as info:
        read_annotations(path)
    assert info.value.line == line
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ('{"item_id": 1, "tags": ["a"], "label": [1]}\n{oops\n', 2, "invalid JSON"),
        ("[1, 2]\n", 1, "must be a JSON object"),
        ('{"item_id": 1, "tags": [], "label": []}\n', 1, "tags are empty"),
    ],
)
def test_jsonl_errors(tmp_path, content, line, problem):
    path = _write(tmp_path / "bad.jsonl", content)
    with pytest.raises(DataError) as info:
        read_annotations(path)
    assert info.value.line == line
    assert problem in info.value.problem


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="no items"):
        read_annotations(_write(tmp_path / "e.csv", "item_id,tags,label\n"))
    with pytest.raises(DataError, match="not found"):
        read_annotations(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("raw", "line", "problem"),
    [
        # a Latin-1 "é" (0xe9) on the third line; the second line is fine
        (b'item_id,tags,important_tags\n1,sky,sky\n2,"caf\xe9,sky",sky\n', 3, "byte 0xe9"),
        (b"item_id,t\xffgs,important_tags\n1,sky,sky\n", 1, "byte 0xff at column 10"),
        # a bad byte inside a quoted field that spans lines is reported on its own line
        (b'item_id,tags,important_tags\n1,"sky,\nsun\x80",sky\n', 3, "byte 0x80"),
    ],
)
def test_non_utf8_bytes_name_their_line(tmp_path, raw, line, problem):
    path = tmp_path / "latin1.csv"
    path.write_bytes(raw)
    with pytest.raises(DataError) as info:
        read_annotations(path)
    assert info.value.line == line
    assert problem in info.value.problem and "UTF-8" in info.value.problem
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_non_utf8_jsonl_names_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"item_id": 1, "tags": "a", "label": "1"}\n{"item_id": 2, "tags": "\xff"}\n')
    with pytest.raises(DataError) as info:
        read_annotations(path)
    assert info.value.line == 2 and "not UTF-8" in info.value.problem


def test_a_field_beyond_the_csv_limit_names_line_and_limit(tmp_path):
    path = tmp_path / "huge.csv"
    huge = "a" * 10_000_000  # one 10 MB line
    path.write_text(f"item_id,tags,important_tags\n1,sky,sky\n2,sea,sea\n3,{huge},sky\n")
    with pytest.raises(DataError) as info:
        read_annotations(path)
    assert info.value.line == 4
    assert "longer than the CSV limit of 131072 characters" in info.value.problem


def test_utf8_with_bom_and_non_ascii_tags_still_read(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes('item_id,tags,important_tags\n1,"café,Straße",café\n'.encode("utf-8-sig"))
    (record,) = read_annotations(path)
    assert record.tags == ("café", "Straße") and record.important_tags == ("café",)
