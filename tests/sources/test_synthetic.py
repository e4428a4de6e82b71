from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from magneto.data.annotation_files import read_annotations
from magneto.sources.nuswide import prepare_nuswide
from magneto.sources.synthetic.generator import SynthConfig, generate
from magneto.sources.synthetic.scenes import CONCEPTS81, SCENES, concept_style


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    summary = generate(SynthConfig(items=300, unlabeled=60, seed=5), root / "raw")
    prepared = root / "prepared"
    prep = prepare_nuswide(root / "raw", prepared)
    return root / "raw", summary, prepared, prep


def test_vocabulary_is_the_81_nus_wide_concepts():
    assert len(CONCEPTS81) == 81 == len(set(CONCEPTS81))
    assert list(CONCEPTS81) == sorted(CONCEPTS81)
    grouped = [c for members in SCENES.values() for c in members]
    assert sorted(grouped) == list(CONCEPTS81)


def test_raw_layout_matches_nus_wide(synth):
    raw, summary, _, _ = synth
    lines = (raw / "ImageList" / "Imagelist.txt").read_bytes().split(b"\r\n")[:-1]
    assert len(lines) == summary.images_listed
    assert all(b"\\" in ln and ln.endswith(b".jpg") for ln in lines)
    train = (raw / "ImageList" / "TrainImagelist.txt").read_text().splitlines()
    test = (raw / "ImageList" / "TestImagelist.txt").read_text().splitlines()
    assert sorted(train + test) == sorted(ln.decode() for ln in lines)
    rows = (raw / "NUS_WID_Tags" / "AllTags81.txt").read_text().splitlines()
    assert len(rows) == len(lines) and all(len(r.split()) == 81 for r in rows)
    label_files = list((raw / "Groundtruth" / "AllLabels").glob("Labels_*.txt"))
    assert len(label_files) == 81
    assert (raw / "ConceptsList" / "Concepts81.txt").read_text().split() == list(CONCEPTS81)
    assert {p.name for p in (raw / "Flickr").iterdir()} == set(SCENES)


def test_preparation_finds_what_the_generator_planted(synth):
    _, summary, _, prep = synth
    assert prep.train_items + prep.val_items == summary.expected_prepared == 298
    assert prep.unlabeled_items == summary.unlabeled_untagged_visible + summary.unlabeled_no_visible
    assert (
        prep.duplicate_ids_consistent
        == summary.defects["duplicate id, rows agree (one row in each split)"]
    )
    assert prep.duplicate_ids_inconsistent == summary.defects["duplicate id, rows disagree"]
    assert prep.ids_in_both_splits == prep.duplicate_ids_consistent
    assert prep.missing_images == summary.defects["missing image"]
    assert 0.3 < prep.mean_important_ratio < 0.6
    assert 0.25 < prep.val_items / (prep.train_items + prep.val_items) < 0.55


def _hue_present(pixels_hsv: np.ndarray, hue: float) -> int:
    h = pixels_hsv[..., 0].astype(float) / 255.0
    s = pixels_hsv[..., 1]
    dist = np.minimum(np.abs(h - hue), 1 - np.abs(h - hue))
    return int(((dist < 0.035) & (s > 150)).sum())


def test_image_content_decides_which_tags_are_important(synth):
    raw, _, prepared, _ = synth
    truncated = set(synth[1].defects["truncated jpeg"])
    checked = 0
    for record in read_annotations(prepared / "train.csv")[:60]:
        if record.item_id in truncated:
            continue
        hsv = np.asarray(Image.open(raw / "Flickr" / record.image).convert("HSV"))
        scenes = {concept_style(CONCEPTS81.index(t))[0] for t in record.important_tags}
        assert len(scenes) == 1
        for tag, important in zip(record.tags, record.labels, strict=True):
            scene, hue, _ = concept_style(CONCEPTS81.index(tag))
            if scene not in scenes:
                continue  # a random tag of another scene: its hue may appear by coincidence
            area = _hue_present(hsv, hue)
            assert (area > 400) == bool(important), (record.item_id, tag, area)
        checked += 1
    assert checked >= 50


def test_tags_alone_do_not_reveal_importance(synth):
    _, _, prepared, _ = synth
    counts = defaultdict(lambda: [0, 0])
    for name in ("train.csv", "val.csv"):
        for record in read_annotations(prepared / name):
            for tag, y in zip(record.tags, record.labels, strict=True):
                counts[tag][0] += y
                counts[tag][1] += 1
    rates = [k / n for k, n in counts.values() if n >= 15]
    assert len(rates) > 60
    # No tag is a reliable keep or drop signal on its own.
    assert min(rates) > 0.15 and max(rates) < 0.85


def test_deterministic_per_seed(tmp_path):
    config = SynthConfig(items=20, unlabeled=5, seed=3)
    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    generate(config.model_copy(update={"seed": 4}), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_refuses_to_write_into_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate(SynthConfig(items=10, unlabeled=0), tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_without_defects_every_item_survives(tmp_path):
    summary = generate(SynthConfig(items=30, unlabeled=4, defects=False), tmp_path / "raw")
    prep = prepare_nuswide(tmp_path / "raw", tmp_path / "p", image_check="decode", workers=1)
    assert prep.train_items + prep.val_items == summary.expected_prepared == 30
    assert not (prep.missing_images or prep.corrupt_images or prep.duplicate_ids_inconsistent)


def test_image_only_tables_are_pinned(tmp_path):
    """The image-only generator's lists, matrices and summary stay byte for byte what they
    were (the benchmark profiles reuse its writers; JPEG bytes are left out of the pin, as
    they depend on the JPEG library)."""
    generate(SynthConfig(items=40, unlabeled=10, seed=3, image_size=32), tmp_path)
    h = hashlib.sha256()
    pinned = (p for p in tmp_path.rglob("*") if p.suffix not in (".jpg", ".jsonl"))  # boxes: new
    for path in sorted(p for p in pinned if p.is_file()):
        h.update(str(path.relative_to(tmp_path)).encode())
        h.update(path.read_bytes())
    assert h.hexdigest() == "3939b6fac1ead6a216e6f081df1adfec286b8e963aba5aa7ae5455491bb699ef"
