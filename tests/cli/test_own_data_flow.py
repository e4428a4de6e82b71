"""The flow docs/data.md shows, as a new user runs it: their CSV of 200 items and a folder of
images -> magneto prepare own -> train -> evaluate -> predict FOLDER, nothing written by hand."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from magneto.cli.main import main
from magneto.data.annotation_files import read_annotations
from magneto.sources.nuswide import prepare_nuswide
from magneto.sources.synthetic.generator import SynthConfig, generate

pytestmark = pytest.mark.slow  # prepares, trains and evaluates

SMALL = ["--input-size", "64", "--d-model", "32", "--heads", "2", "--d-ff", "64"]
SMALL += ["--tag-layers", "1", "--image-layers", "1", "--batch-size", "16", "--workers", "0"]
SMALL += ["--no-progress", "--no-augment-images", "--lr", "0.05", "--epochs", "3"]


@pytest.fixture(scope="module")
def users_files(tmp_path_factory):
    """What a user has: photos in folders, and one CSV naming them (200 labelled items and 20
    without labels), in the documented columns."""
    root = tmp_path_factory.mktemp("user")
    generate(SynthConfig(items=240, unlabeled=20, seed=3, image_size=64), root / "raw")
    prepare_nuswide(root / "raw", root / "paper")
    shutil.copytree(root / "raw" / "Flickr", root / "photos")
    records = read_annotations(root / "paper" / "train.csv")
    records += read_annotations(root / "paper" / "val.csv")
    unlabeled = read_annotations(root / "paper" / "unlabeled.csv", require_labels=False)[:20]
    with (root / "mine.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "tags", "important_tags", "image"])
        for r in records[:200]:
            writer.writerow([r.item_id, ",".join(r.tags), ",".join(r.important_tags), r.image])
        for r in unlabeled:
            writer.writerow([r.item_id, ",".join(r.tags), "", r.image])
    return root


def test_a_users_csv_and_photos_become_a_model_and_its_predictions(users_files, capsys):
    root = users_files
    photos, prepared, run = root / "photos", root / "prepared", root / "runs" / "mine"
    assert main(["prepare", "own", "--annotations", str(root / "mine.csv"), "--images",
                 str(photos), "--out", str(prepared), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 220 and report["items"]["unlabeled"] == 20
    assert (
        sum(report["items"][s] for s in ("train", "val", "test")) + sum(report["dropped"].values())
        == 200
    )
    assert main(["train", "--data", str(prepared), "--images", str(photos), "--out", str(run),
                 "--backbone-weights", "none", *SMALL]) == 0  # fmt: skip
    assert (run / "best_f1.ckpt").is_file()
    checkpoint = str(run / "best_f1.ckpt")
    capsys.readouterr()
    argv = ["evaluate", "--checkpoint", checkpoint, "--data", str(prepared / "test.csv")]
    assert main([*argv, "--images", str(photos), "--json", "--workers", "0"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["items"] == report["items"]["test"] - len(figures.get("skipped", []))
    assert 0.0 <= figures["f1"] <= 1.0
    folder = next(p for p in sorted(photos.iterdir()) if p.is_dir())
    argv = ["predict", "--checkpoint", checkpoint, str(folder), "--tags", "sky,clouds,water"]
    status = main([*argv, "--json", "--workers", "0"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(list(folder.glob("*.jpg"))) and rows
    assert status == (1 if any(r["error_kind"] for r in rows) else 0)
    assert all(r["error_kind"] in (None, "bad_image") for r in rows)  # the data's broken JPEGs
