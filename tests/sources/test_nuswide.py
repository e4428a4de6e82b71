"""Preparation on a raw layout built by hand, whose every count the test knows."""

from __future__ import annotations

import json

import pytest

from magneto.data.annotation_files import read_annotations
from magneto.data.vocabulary import Vocabulary
from magneto.errors import DataError
from magneto.sources.nuswide import parse_image_line, prepare_nuswide
from tests.conftest import write_jpeg, write_truncated_jpeg

CONCEPTS = ["beach", "clouds", "ocean", "sky", "sun"]

# (list line, tags, ground truth, split) -- split: "train", "test"
ROWS = [
    ("beach\\0001_100.jpg", "beach,ocean,sky", "beach,sky", "train"),  # kept
    ("beach\\0002_101.jpg", "", "beach", "train"),  # no tags -> dropped
    ("sky\\0001_102.jpg", "clouds,sky", "", "test"),  # no ground truth -> unlabeled
    ("sky\\0002_103.jpg", "sky", "sky,sun", "test"),  # sun not tagged -> unlabeled
    ("sky\\0003_104.jpg", "clouds,sky,sun", "sky", "test"),  # kept (val)
    ("ocean\\0001_105.jpg", "ocean", "ocean", "train"),  # kept (train)
    ("ocean\\0002_106.jpg", "beach,clouds,ocean,sky,sun", "ocean", "train"),  # too long (max 4)
    ("beach\\0003_107.jpg", "beach,sun", "sun", "train"),  # duplicate id, rows agree ...
    ("sun\\0001_107.jpg", "beach,sun", "sun", "test"),  # ... other row in the test split
    ("sea\\0001_108.jpg", "ocean", "ocean", "train"),  # duplicate id, rows disagree ...
    ("sea\\0002_108.jpg", "ocean", "", "test"),  # ... -> dropped
    ("sun\\0002_109.jpg", "sun", "sun", "test"),  # image missing -> dropped
    ("sun\\0003_110.jpg", "clouds,sun", "clouds", "test"),  # truncated JPEG
    ("sun\\0004_111.jpg", "sun,sky", "sun", "neither"),  # listed in no split
]


def build_raw(root, *, concepts_at_root=False, skip_images=("109",), corrupt=("110",)):
    (root / "ImageList").mkdir(parents=True)
    (root / "NUS_WID_Tags").mkdir()
    (root / "Groundtruth" / "AllLabels").mkdir(parents=True)
    concepts_file = (
        root / "Concepts81.txt" if concepts_at_root else root / "ConceptsList" / "Concepts81.txt"
    )
    concepts_file.parent.mkdir(exist_ok=True)
    concepts_file.write_text("\n".join(CONCEPTS) + "\n")
    lines = [r[0] for r in ROWS]
    (root / "ImageList" / "Imagelist.txt").write_text("\r\n".join(lines) + "\r\n")
    (root / "ImageList" / "TrainImagelist.txt").write_text(
        "\n".join(r[0] for r in ROWS if r[3] == "train") + "\n"
    )
    (root / "ImageList" / "TestImagelist.txt").write_text(
        "\n".join(r[0] for r in ROWS if r[3] == "test") + "\n"
    )
    tag_lines = []
    for _, tags, _, _ in ROWS:
        present = set(filter(None, tags.split(",")))
        tag_lines.append(" ".join("1" if c in present else "0" for c in CONCEPTS) + " ")
    (root / "NUS_WID_Tags" / "AllTags81.txt").write_text("\n".join(tag_lines) + "\n")
    for c in CONCEPTS:
        values = ["1" if c in truth.split(",") else "0" for _, _, truth, _ in ROWS]
        (root / "Groundtruth" / "AllLabels" / f"Labels_{c}.txt").write_text(
            "\n".join(values) + "\n"
        )
    for line, *_ in ROWS:
        item_id = line.split("_")[-1][:-4]
        path = root / "Flickr" / line.replace("\\", "/")
        if item_id in skip_images:
            continue
        if item_id in corrupt:
            write_truncated_jpeg(path)
        else:
            write_jpeg(path)
    return root


def test_parse_image_line():
    assert parse_image_line("actor\\0001_2124494179.jpg") == (
        "2124494179",
        "actor/0001_2124494179.jpg",
    )
    assert parse_image_line("C:\\ImageData\\Flickr\\actor\\0001_21.jpg\r\n") == (
        "21",
        "actor/0001_21.jpg",
    )
    assert parse_image_line("actor/0002_a_b_7.jpg") == ("7", "actor/0002_a_b_7.jpg")


def test_prepare_counts_outputs_and_defects(tmp_path):
    root = build_raw(tmp_path / "raw")
    out = tmp_path / "prepared"
    summary = prepare_nuswide(root, out, max_len=4)
    assert summary.images_listed == 14 and summary.concepts == 5
    assert [(s["step"], s["items"]) for s in summary.steps] == [
        ("unique item ids (duplicates resolved)", 11),  # 12 ids, 108 disagrees
        ("with at least one of the concepts as a tag", 10),  # 101
        ("with at least one ground-truth label", 9),  # 102
        ("important tags all among the tags", 8),  # 103
        ("at most 4 tags", 7),  # 106
        ("image present", 6),  # 109
    ]
    assert summary.duplicate_ids_consistent == ["107"]
    assert summary.duplicate_ids_inconsistent == ["108"]
    assert summary.ids_in_both_splits == ["107"]
    assert summary.ids_in_no_split == ["111"]
    assert summary.missing_images == ["109"]
    assert summary.corrupt_images == []  # only found with image_check="decode"
    assert (summary.train_items, summary.val_items, summary.unlabeled_items) == (3, 2, 2)

    train = read_annotations(out / "train.csv")
    assert [r.item_id for r in train] == ["100", "105", "107"]
    assert train[0].tags == ("beach", "ocean", "sky")  # concept order
    assert train[0].labels == (1, 0, 1)
    assert train[0].image == "beach/0001_100.jpg"
    assert (out / "Flickr").exists() is False
    val = read_annotations(out / "val.csv")
    assert [r.item_id for r in val] == ["104", "110"]
    unlabeled = read_annotations(out / "unlabeled.csv", require_labels=False)
    assert [r.item_id for r in unlabeled] == ["102", "103"]
    assert all(r.labels is None for r in unlabeled)
    assert Vocabulary.load(out / "vocab.csv").words == CONCEPTS
    assert summary.mean_tags_per_item == pytest.approx((3 + 1 + 2 + 3 + 2) / 5)
    assert summary.mean_important_ratio == pytest.approx((2 / 3 + 1 + 1 / 2 + 1 / 3 + 1 / 2) / 5)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["train_items"] == 3 and saved["steps"][-1]["items"] == 6
    assert any("duplicate ids dropped (rows disagree): 1 [108]" in ln for ln in summary.lines())


def test_decode_check_drops_corrupt_jpegs(tmp_path):
    root = build_raw(tmp_path / "raw", concepts_at_root=True)
    summary = prepare_nuswide(root, tmp_path / "out", max_len=4, image_check="decode", workers=2)
    assert summary.corrupt_images == ["110"]
    assert summary.val_items == 1
    assert summary.steps[-1] == {"step": "image present and decodable", "items": 5}


def test_existing_outputs_are_never_overwritten(tmp_path):
    root = build_raw(tmp_path / "raw")
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.csv").write_text("precious user data\n")
    with pytest.raises(FileExistsError, match=r"already holds train\.csv"):
        prepare_nuswide(root, out)
    assert (out / "train.csv").read_text() == "precious user data\n"
    prepare_nuswide(root, out, max_len=4, overwrite=True)
    assert (out / "train.csv").read_text().startswith("item_id,tags,important_tags,label,image")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (
            lambda r: (r / "NUS_WID_Tags" / "AllTags81.txt").write_text("0 1 0 0 0\n"),
            "has 1 rows but Imagelist.txt has 14",
        ),
        (
            lambda r: (r / "Groundtruth" / "AllLabels" / "Labels_sun.txt").unlink(),
            "Labels_sun.txt: file not found",
        ),
        (lambda r: (r / "ConceptsList" / "Concepts81.txt").unlink(), "Concepts81.txt not found"),
        (lambda r: (r / "ImageList" / "TestImagelist.txt").unlink(), "image list not found"),
    ],
)
def test_broken_raw_layouts_give_clear_errors(tmp_path, breakage, message):
    root = build_raw(tmp_path / "raw")
    breakage(root)
    with pytest.raises(DataError, match=message):
        prepare_nuswide(root, tmp_path / "out")


def test_bad_values_name_the_line(tmp_path):
    root = build_raw(tmp_path / "raw")
    path = root / "NUS_WID_Tags" / "AllTags81.txt"
    lines = path.read_text().splitlines()
    lines[3] = "0 1 2 0 0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        prepare_nuswide(root, tmp_path / "out")
    assert info.value.line == 4 and "0 or 1" in info.value.problem
    lines[3] = "0 1 0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="expected 5 values, found 3"):
        prepare_nuswide(root, tmp_path / "out2")


def test_a_seeded_test_split_is_held_out_of_the_official_test_list(tiny_data, tmp_path):
    _, images = tiny_data
    raw = images.parent
    plain = prepare_nuswide(raw, tmp_path / "plain")
    held = prepare_nuswide(raw, tmp_path / "held", test_holdout=0.5, seed=1)
    assert not (tmp_path / "plain" / "test.csv").exists() and plain.test_items == 0
    assert held.train_items == plain.train_items  # the paper's training split, unchanged
    assert held.val_items + held.test_items == plain.val_items
    assert 0 < held.test_items < plain.val_items
    again = prepare_nuswide(raw, tmp_path / "again", test_holdout=0.5, seed=1)
    assert again.test_items == held.test_items  # the same items, by the seeded hash
    prepare_nuswide(raw, tmp_path / "other", test_holdout=0.5, seed=2)
    other_test = [r.item_id for r in read_annotations(tmp_path / "other" / "test.csv")]
    held_test = [r.item_id for r in read_annotations(tmp_path / "held" / "test.csv")]
    assert other_test != held_test and not set(held_test) & {
        r.item_id for r in read_annotations(tmp_path / "held" / "val.csv")
    }
    prepare_nuswide(raw, tmp_path / "held", overwrite=True)  # no holdout now: no stale test.csv
    assert not (tmp_path / "held" / "test.csv").exists()
    with pytest.raises(ValueError, match="holdout"):
        prepare_nuswide(raw, tmp_path / "bad", test_holdout=1.0)
