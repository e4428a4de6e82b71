"""``magneto prepare own``: your own annotations, checked, split and written for training."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from magneto.cli.main import main
from magneto.data.annotation_files import read_annotations
from magneto.data.vocabulary import Vocabulary
from magneto.errors import DataError
from magneto.sources.own import OwnDataSettings, prepare_own, split_of

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def image(root: Path, name: str, colour: str = "red") -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), COLOURS[colour]).save(path)
    return name


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def library(tmp_path):
    """60 labelled items (CSV, important_tags form), 20 (JSONL, label form), 20 (Parquet,
    lists), and 10 unlabeled ones; every image on disk."""
    images = tmp_path / "photos"
    csv_rows = []
    for i in range(60):
        colour = ("red", "green", "blue")[i % 3]
        name = image(images, f"a/{i}.png", colour)
        csv_rows.append(f'c{i},"{colour},Sky,photo,tag{i % 7}",{colour},{name}')
    for i in range(10):
        name = image(images, f"u/{i}.png")
        csv_rows.append(f'u{i},"red,sky,tag{i}",,{name}')
    csv_file = write_csv(tmp_path / "mine.csv", "item_id,tags,important_tags,image", csv_rows)
    jsonl = tmp_path / "more.jsonl"
    with jsonl.open("w") as handle:
        for i in range(20):
            image(images, f"j{i}.jpg", "green")
            record = {"item_id": f"j{i}", "tags": ["green", "grass", "photo"], "label": [1, 1, 0]}
            handle.write(json.dumps(record) + "\n")
    table = pa.table(
        {
            "item_id": [f"p{i}" for i in range(20)],
            "tags": [["blue", "sea", "photo"] for _ in range(20)],
            "important_tags": [["blue", "sea"] for _ in range(20)],
            "image": [image(images, f"p/{i}.png", "blue") for i in range(20)],
        }
    )
    parquet = tmp_path / "most.parquet"
    pq.write_table(table, parquet)
    return [csv_file, jsonl, parquet], images


def test_every_format_is_prepared_into_the_files_training_reads(library, tmp_path):
    sources, images = library
    report = prepare_own(sources, tmp_path / "prep", images=images)
    out = tmp_path / "prep"
    assert sorted(p.name for p in out.iterdir()) == [
        "report.json",
        "test.csv",
        "train.csv",
        "unlabeled.csv",
        "val.csv",
        "vocab.csv",
    ]
    splits = {s: read_annotations(out / f"{s}.csv") for s in ("train", "val", "test")}
    ids = [r.item_id for records in splits.values() for r in records]
    assert len(ids) == len(set(ids)) == 100  # every labelled item in exactly one split
    assert {r.item_id for r in read_annotations(out / "unlabeled.csv", require_labels=False)} == {
        f"u{i}" for i in range(10)
    }
    assert all(split_of(r.item_id, OwnDataSettings()) == s for s, rs in splits.items() for r in rs)
    by_id = {r.item_id: r for records in splits.values() for r in records}
    assert by_id["j3"].important_tags == ("green", "grass")
    assert by_id["p0"].important_tags == ("blue", "sea") and by_id["p0"].image == "p/0.png"
    vocabulary = Vocabulary.load(out / "vocab.csv")
    assert {"sky", "photo", "red", "grass", "sea"} <= {w.lower() for w in vocabulary.words}
    saved = json.loads((out / "report.json").read_text())
    assert saved["rows"] == 110 and saved["kept"] == 110 and saved["dropped"] == {}
    assert saved["items"] == {s: len(r) for s, r in splits.items()} | {"unlabeled": 10}
    assert report.lines()[0] == "rows read: 110, kept: 110, dropped: none"


def test_an_item_keeps_its_split_when_rows_are_added(library, tmp_path):
    sources, images = library
    prepare_own(sources[:1], tmp_path / "one", images=images)
    prepare_own(sources, tmp_path / "all", images=images)
    for split in ("train", "val", "test"):
        before = {r.item_id for r in read_annotations(tmp_path / "one" / f"{split}.csv")}
        after = {r.item_id for r in read_annotations(tmp_path / "all" / f"{split}.csv")}
        assert before <= after
    other = OwnDataSettings(seed=1)
    moved = [
        i for i in range(60) if split_of(f"c{i}", other) != split_of(f"c{i}", OwnDataSettings())
    ]
    assert moved  # another seed is another split


def test_the_vocabulary_comes_from_train_and_unlabeled_with_min_count_and_max_vocab(
    library, tmp_path
):
    sources, images = library
    settings = OwnDataSettings(min_count=3, max_vocab=6)
    report = prepare_own(sources, tmp_path / "prep", images=images, settings=settings)
    words = [w.lower() for w in Vocabulary.load(tmp_path / "prep" / "vocab.csv").words]
    assert len(words) == 6 and words[0] == "photo"  # the most frequent first
    assert not any(w.startswith("tag") for w in words)  # tag0..tag6: rare or cut
    d = report.as_dict()["vocabulary"]
    assert d["size"] == 6 and d["below_min_count"] + d["beyond_max_vocab"] == d["tags_seen"] - 6
    assert d["coverage"]["train"] < 1.0
    for record in read_annotations(tmp_path / "prep" / "train.csv"):
        assert all(t.lower() in words for t in record.tags)
        assert len(record.labels or ()) == len(record.tags)


def test_bad_rows_are_dropped_with_their_reason_and_place(tmp_path):
    images = tmp_path / "photos"
    good = [f'g{i},"sky,sea",sky,{image(images, f"g{i}.png")}' for i in range(30)]
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows = [
        *good,
        ',"sky,sea",sky,x.png',  # no id
        'e1,"",,g1.png',  # no tags
        'e2,"sky,sea",dog,g1.png',  # important tag not among the tags
        'g3,"sky,sea",sea,g3.png',  # repeated id
        'e3,"sky,sea",sky,../secret.png',  # outside the image folder
        'e4,"sky,sea",sky,gone.png',  # image missing
        'e5,"sky,sea",sky,broken.jpg',  # image does not decode
    ]
    csv_file = write_csv(tmp_path / "mine.csv", "item_id,tags,important_tags,image", rows)
    settings = OwnDataSettings(image_check="decode")
    report = prepare_own([csv_file], tmp_path / "prep", images=images, settings=settings)
    assert dict(report.dropped) == {
        "bad_row": 3,
        "no_tags": 1,
        "duplicate_id": 1,
        "missing_image": 1,
        "bad_image": 1,
    }
    quoted = " ".join(q for qs in report.examples.values() for q in qs)
    for line in range(32, 39):
        assert f"mine.csv:{line}:" in quoted
    assert report.kept() == 30


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'item_id,tags,important_tags\nc1,"sky,\xff\xfe",sky\n', "mine.csv:2"),
        (b"id,labels\n1,2\n", "header must contain the columns item_id and tags"),
        (b'item_id,tags,important_tags\nc1,"sky\n', "mine.csv"),
    ],
    ids=["not utf-8", "wrong header", "unclosed quote"],
)
def test_a_file_that_cannot_be_read_is_one_error_naming_it(tmp_path, content, problem):
    path = tmp_path / "mine.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=problem):
        prepare_own(
            [path], tmp_path / "prep", images=None, settings=OwnDataSettings(image_check="none")
        )
    assert not (tmp_path / "prep" / "train.csv").exists()


def test_nothing_is_replaced_without_overwrite_and_a_failed_run_keeps_the_old_files(
    library, tmp_path
):
    sources, images = library
    out = tmp_path / "prep"
    prepare_own(sources, out, images=images)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        prepare_own(sources, out, images=images)
    only_unlabeled = write_csv(tmp_path / "u.csv", "item_id,tags", ['u1,"sky,sea"'])
    with pytest.raises(DataError, match="no usable labelled item lands in train or val"):
        prepare_own(
            [only_unlabeled],
            out,
            images=None,
            overwrite=True,
            settings=OwnDataSettings(image_check="none"),
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    prepare_own(
        sources, out, images=images, overwrite=True, settings=OwnDataSettings(test_fraction=0)
    )
    assert not (out / "test.csv").exists()  # no stale split from the earlier run


def test_the_command_prints_the_report_and_exits_with_the_documented_statuses(
    library, tmp_path, capsys
):
    sources, images = library
    argv = ["prepare", "own", "--annotations", *map(str, sources), "--images", str(images)]
    assert main([*argv, "--out", str(tmp_path / "p"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == 110
    with pytest.raises(SystemExit) as info:  # contradicting flags: usage, status 2
        main(
            [*argv, "--out", str(tmp_path / "q"), "--val-fraction", "0.5", "--test-fraction", "0.5"]
        )
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["prepare", "own", "--annotations", str(sources[0]), "--out", str(tmp_path / "r")])
    assert info.value.code == 2 and "--images" in capsys.readouterr().err
    missing = [
        "prepare",
        "own",
        "--annotations",
        str(tmp_path / "none.csv"),
        "--images",
        str(images),
    ]
    assert main([*missing, "--out", str(tmp_path / "s")]) == 1
    assert "none.csv: annotation file not found" in capsys.readouterr().err
