"""``magneto predict`` on many images: files, folders, glob patterns or a manifest, batched
through the bulk job's path, one result per image in order."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from magneto.cli.main import main
from magneto.data.annotation_files import read_annotations


@pytest.fixture
def photos(tiny_data, tmp_path):
    """Six of the tiny data's images in a folder with a subfolder, and one broken file."""
    data, images = tiny_data
    records = [r for r in read_annotations(data / "val.csv") if decodes(images / r.image_path)][:6]
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, record in enumerate(records):
        target = folder / ("more" if i >= 4 else "") / f"p{i}.jpg"
        shutil.copy(images / record.image_path, target)
    return folder, records


def decodes(path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
    except OSError:  # the tiny data has truncated JPEGs, as NUS-WIDE does
        return False
    return True


def run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_folder_a_pattern_and_a_file_are_scored_in_order_each_once(checkpoint, photos, capsys):
    folder, _ = photos
    argv = ["predict", "--checkpoint", str(checkpoint), str(folder / "p0.jpg"), str(folder)]
    argv += [str(folder / "more" / "*.jpg"), "--tags", "sky,clouds,unicorn", "--json"]
    status, out, _ = run([*argv, "--workers", "0"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    expected = ["p0.jpg", "more/p4.jpg", "more/p5.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert status == 0
    assert [r["item_id"] for r in rows] == [str(folder / name) for name in expected]
    for row in rows:
        assert [t["tag"] for t in row["tags"]] == ["sky", "clouds", "unicorn"]
        assert row["unknown_tags"] == ["unicorn"] and row["error_kind"] is None


def test_the_table_shows_the_threshold_and_a_broken_image_fails_alone(checkpoint, photos, capsys):
    folder, _ = photos
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg at all")
    argv = ["predict", "--checkpoint", str(checkpoint), str(folder), "--tags", "sky,water"]
    status, out, err = run([*argv, "--threshold", "0.3", "--workers", "0"], capsys)
    lines = out.splitlines()
    assert status == 1 and "1 of 7 items could not be scored" in err
    assert lines[0].startswith("threshold 0.30;")
    assert any(line.startswith(f"{folder / 'broken.jpg'}: error: bad_image") for line in lines)
    assert sum(line.startswith(str(folder)) for line in lines) == 7


def test_a_manifest_brings_its_own_tags(checkpoint, tiny_data, capsys):
    data, images = tiny_data
    argv = ["predict", "--checkpoint", str(checkpoint), str(data / "val.csv")]
    status, out, _ = run([*argv, "--images", str(images), "--json", "--workers", "0"], capsys)
    records = {r.item_id: r for r in read_annotations(data / "val.csv")}
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(records)
    scored = [r for r in rows if not r["error_kind"]]
    assert scored and all(
        [t["tag"] for t in r["tags"]] == list(records[r["item_id"]].tags) for r in scored
    )
    assert status == (1 if len(scored) < len(rows) else 0)  # the tiny data has a broken JPEG


def test_one_image_lists_every_tag(checkpoint, photos, capsys):
    folder, _ = photos
    argv = ["predict", "--checkpoint", str(checkpoint), str(folder / "p1.jpg"), "--tags", "sky,dog"]
    status, out, _ = run(argv, capsys)
    assert status == 0 and out.startswith("kept: ") and "(threshold " in out.splitlines()[0]
    assert [
        line.split()[-3] if "alpha" in line else line.split()[-1] for line in out.splitlines()[1:]
    ] == [
        "sky",
        "dog",
    ]


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        (["IMAGES"], 2, "pass --tags"),
        (["VAL", "--tags", "sky"], 2, "a manifest carries its own tags"),
        (["IMAGES", "VAL", "--tags", "sky"], 2, "a manifest is scored alone"),
        (["IMAGES", "--tags", "sky", "--images", "IMAGES"], 2, "--images is for a manifest"),
        (["NOWHERE", "--tags", "sky"], 1, "no such file, folder or pattern"),
        (["IMAGES/*.png", "--tags", "sky"], 1, "no image matches this pattern"),
    ],
)
def test_wrong_inputs_are_one_line(checkpoint, photos, tiny_data, extra, status, message, capsys):
    folder, _ = photos
    names = {"IMAGES": str(folder), "VAL": str(tiny_data[0] / "val.csv"), "NOWHERE": "nowhere"}
    argv = ["predict", "--checkpoint", str(checkpoint)]
    argv += [next((v + a[len(k) :] for k, v in names.items() if a.startswith(k)), a) for a in extra]
    if status == 2:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
    else:
        code, _, err = run(argv, capsys)
        assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1
