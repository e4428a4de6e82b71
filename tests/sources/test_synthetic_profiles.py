"""The nuswide and large-scale synthetic benchmarks: statistics, determinism, and signal in
both the tags and the pictures (small, fast versions of each profile)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from magneto.cli.main import main
from magneto.data.annotation_files import read_annotations
from magneto.data.vocabulary import Vocabulary
from magneto.sources.nuswide import prepare_nuswide
from magneto.sources.synthetic.benchmark import BenchConfig, generate_benchmark
from magneto.sources.synthetic.generator import SynthConfig, generate
from magneto.sources.synthetic.profiles import LARGE_SCALE, NUSWIDE, ProfileConfig, profile_config
from magneto.sources.synthetic.scenes import CONCEPTS81
from magneto.sources.synthetic.signal import read_drawn, signal_report, tag_statistics
from magneto.sources.synthetic.vocab import HUE_STEPS, build_concepts


def _digest(root):
    """Every file's bytes (``summary.json`` names the image directory as given: left out)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        data = path.read_bytes()
        if path.name == "summary.json":
            data = data.replace(str(root).encode(), b"ROOT")
        h.update(data)
    return h.hexdigest()


def _config(profile, **overrides):
    return BenchConfig(profile=profile_config(profile), **overrides)


@pytest.fixture(scope="module")
def nus(tmp_path_factory):
    """1,200 nuswide items (64 px), prepared by the unchanged ``prepare nuswide``."""
    root = tmp_path_factory.mktemp("nus")
    summary = generate_benchmark(
        _config("nuswide", items=1200, unlabeled=60, seed=7, image_size=64), root / "raw"
    )
    prep = prepare_nuswide(root / "raw", root / "prepared")
    return root / "raw", root / "prepared", summary, prep


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """500 large-scale items (48 px), written already prepared."""
    root = tmp_path_factory.mktemp("large") / "data"
    summary = generate_benchmark(
        _config("large-scale", items=500, unlabeled=20, seed=7, image_size=48), root
    )
    return root, summary


def _labelled(data):
    return read_annotations(data / "train.csv") + read_annotations(data / "val.csv")


def _stats(data):
    records = _labelled(data)
    vocab = Vocabulary.load(data / "vocab.csv")
    return tag_statistics([r.tags for r in records], [r.labels for r in records], len(vocab))


def _signal(data, kinds, images=None):
    return signal_report(
        read_annotations(data / "train.csv"),
        read_annotations(data / "val.csv"),
        Vocabulary.load(data / "vocab.csv"),
        drawn=read_drawn(kinds),
        images=images,
    )


def test_profile_knobs_are_validated():
    with pytest.raises(ValidationError, match="salience_mix"):
        ProfileConfig.model_validate({**LARGE_SCALE.model_dump(), "salience_mix": (0.5, 0.5, 0.5)})
    with pytest.raises(ValidationError, match="76 visual concepts"):
        ProfileConfig.model_validate({**NUSWIDE.model_dump(), "concepts": 100})
    with pytest.raises(ValueError, match="unknown profile"):
        profile_config("image-only")


def test_vocabularies():
    nus = build_concepts(NUSWIDE)
    assert nus.names == list(CONCEPTS81)
    assert {nus.names[i] for i in nus.indices("generic")} == {
        "animal", "plants", "vehicle", "water", "sports"
    }  # fmt: skip
    drawn = [tuple(c) for c in nus.code if c[0] >= 0]
    assert len(drawn) == 76 == len(set(drawn))  # every visual concept looks different
    large = build_concepts(LARGE_SCALE)
    assert len(large) >= 5000
    Vocabulary(large.names)  # distinct after normalisation, none empty
    generic = {large.names[i] for i in large.indices("generic")}
    assert {"photo", "nobody", "background", "color", "image", "day"} <= generic
    assert large.names == build_concepts(LARGE_SCALE).names  # fixed by vocab_seed
    for t in range(len(large.theme_names)):  # codes are distinct within a theme
        codes = large.code[large.members(t)]
        assert len({tuple(c) for c in codes}) == len(codes)


@pytest.mark.slow
def test_nuswide_statistics_and_unchanged_preparation(nus):
    raw, prepared, summary, prep = nus
    assert (raw / "ConceptsList" / "Concepts81.txt").read_text().split() == list(CONCEPTS81)
    assert prep.train_items + prep.val_items == summary.expected_prepared == 1198
    assert prep.unlabeled_items == 60  # an important tag left out, or no ground truth
    assert prep.duplicate_ids_inconsistent == summary.defects["duplicate id, rows disagree"]
    assert prep.missing_images == summary.defects["missing image"]
    stats = _stats(prepared)
    assert stats["min_tags"] == 1 and 8 <= stats["max_tags"] <= 13
    assert 0.8 <= stats["mean_important_ratio"] <= 0.9
    assert stats["mean_important_ratio"] == pytest.approx(prep.mean_important_ratio)
    assert stats["vocabulary"] == 81 and stats["concepts_used"] >= 75
    assert stats["top10_share"] > 0.5  # a long tail: 9 concepts hold most tag occurrences


@pytest.mark.slow
def test_large_scale_statistics_and_prepared_files(large):
    data, summary = large
    stats = _stats(data)
    assert 32 <= stats["mean_tags"] <= 48
    assert stats["max_tags"] >= 64 and stats["items_over_64"] >= 0.03 * stats["items"]
    assert 0.1 <= stats["mean_important_ratio"] <= 0.2
    assert stats["vocabulary"] >= 5000
    assert stats["top10_share"] > 0.5
    prepared = json.loads((data / "summary.json").read_text())
    assert prepared["train_items"] + prepared["val_items"] == 500
    assert prepared["mean_important_ratio"] == pytest.approx(stats["mean_important_ratio"])
    assert len(read_annotations(data / "unlabeled.csv", require_labels=False)) == 20
    images = {p.stem for p in (data / "images").glob("*.jpg")}
    assert {r.item_id for r in _labelled(data)} <= images
    assert summary.images == str(data / "images") and summary.images_written == 520


@pytest.mark.parametrize("which", ["nus", "large"])
def test_tag_kinds_describe_every_tag(which, nus, large):
    data, root = (nus[1], nus[0]) if which == "nus" else (large[0], large[0])
    with (root / "tag_kinds.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (root / "concepts.csv").open(newline="") as handle:
        role = {r["word"]: r["role"] for r in csv.DictReader(handle)}
    by_item = defaultdict(dict)
    for r in rows:
        by_item[r["item_id"]][r["tag"]] = r
    kinds = defaultdict(int)
    for record in _labelled(data):
        tags = by_item[record.item_id]
        assert set(tags) == set(record.tags)
        for tag, y in zip(record.tags, record.labels, strict=True):
            row = tags[tag]
            kinds[row["kind"]] += 1
            assert int(row["important"]) == y
            assert (row["kind"] == "generic") == (role[tag] == "generic")
            assert (row["kind"] == "visual") == (row["drawn"] == "1")
            if y:  # what matters is in the picture (or, rarely, a generic word)
                assert row["kind"] in ("visual", "generic")
    assert set(kinds) == {"visual", "generic", "noise"}


def test_tags_carry_signal(nus, large):
    """A tag-only model (priors + context, fit on train) beats keeping every tag."""
    n = _signal(nus[1], nus[0] / "tag_kinds.csv")
    assert n["tag_only"] > n["keep_all"] + 0.02
    g = _signal(large[0], large[0] / "tag_kinds.csv")
    assert g["tag_only"] > g["keep_all"] + 0.08


@pytest.mark.slow
def test_pictures_carry_signal_and_neither_stream_alone_reaches_the_top(nus, large):
    raw, prepared = nus[0], nus[1]
    n = _signal(prepared, raw / "tag_kinds.csv", images=raw / "Flickr")
    # A hue detector learned from the training pictures adds to the tags...
    assert n["tag_and_pixels"] > n["tag_only"] + 0.01
    # ... and what the picture shows, alone, is beaten by it with the tags.
    assert n["tag_and_drawn"] > max(n["drawn_only"], n["tag_only"]) + 0.005
    g = _signal(large[0], large[0] / "tag_kinds.csv")
    assert g["tag_and_drawn"] > g["tag_only"] + 0.1
    assert g["tag_and_drawn"] > g["drawn_only"] + 0.015


def _hue_pixels(hsv: np.ndarray, hue: float) -> int:
    h = hsv[..., 0].astype(float) / 256.0
    dist = np.minimum(np.abs(h - hue), 1 - np.abs(h - hue))
    return int(((dist < 0.025) & (hsv[..., 1] > 150) & (hsv[..., 2] > 150)).sum())


@pytest.mark.parametrize("which", ["nus", "large"])
def test_pictures_show_what_is_drawn(which, nus, large):
    """Every drawn concept's hue is in its picture; a tagged but absent concept's is not
    (unless a drawn one shares it)."""
    root = nus[0] if which == "nus" else large[0]
    table = build_concepts(NUSWIDE if which == "nus" else LARGE_SCALE)
    index = {w: i for i, w in enumerate(table.names)}
    with (root / "tag_kinds.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_item = defaultdict(list)
    for r in rows:
        by_item[r["item_id"]].append(r)
    with (root / "items.csv").open(newline="") as handle:
        drawn = {r["item_id"]: r["drawn"].split(",") for r in csv.DictReader(handle)}
    paths = {p.stem.rsplit("_", 1)[-1]: p for p in root.rglob("*.jpg")}
    present = absent = 0
    for item_id in sorted(by_item)[:80]:
        with Image.open(paths[item_id]) as image:
            hsv = np.asarray(image.convert("RGB").convert("HSV"))
        tags = by_item[item_id]
        assert {r["tag"] for r in tags if r["drawn"] == "1"} <= set(drawn[item_id])
        drawn_hues = {table.code[index[w]][1] for w in drawn[item_id]}
        for r in tags:
            code = table.code[index[r["tag"]]]
            if r["drawn"] == "1":
                assert _hue_pixels(hsv, code[1] / HUE_STEPS) >= 12, (item_id, r["tag"])
                present += 1
            elif code[0] >= 0 and code[1] not in drawn_hues:
                assert _hue_pixels(hsv, code[1] / HUE_STEPS) <= 3, (item_id, r["tag"])
                absent += 1
    assert present >= 80 and absent >= 20


@pytest.mark.parametrize("profile", ["nuswide", "large-scale"])
def test_deterministic_per_seed(tmp_path, profile):
    config = _config(profile, items=30, unlabeled=5, seed=3, image_size=32)
    generate_benchmark(config, tmp_path / "a")
    generate_benchmark(config, tmp_path / "b")
    generate_benchmark(config.model_copy(update={"seed": 4}), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.mark.slow
def test_worker_processes_do_not_change_the_bytes(tmp_path):
    config = _config("large-scale", items=280, unlabeled=0, seed=1, image_size=32)
    generate_benchmark(config, tmp_path / "one")
    generate_benchmark(config.model_copy(update={"workers": 2}), tmp_path / "two")
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


@pytest.mark.slow
def test_cli_profiles(tmp_path, capsys):
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    argv = ["synth", "--profile", "nuswide", "--out", str(raw), "--items", "40"]
    assert main([*argv, "--unlabeled", "5", "--image-size", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layout"] == "nuswide-raw" and out["expected_prepared"] == 38
    assert main(["prepare", "nuswide", "--root", str(raw), "--out", str(prepared)]) == 0
    capsys.readouterr()
    assert len(_labelled(prepared)) == 38

    large = tmp_path / "large"
    assert main(["synth", "--profile", "large-scale", "--out", str(large), "--items", "20",
                 "--unlabeled", "0", "--image-size", "32", "--workers", "1"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert f"--data {large} --images {large / 'images'}" in text
    assert len(_labelled(large)) == 20

    # The default profile is the image-only generator, unchanged.
    assert main(["synth", "--out", str(tmp_path / "cli"), "--items", "12", "--json"]) == 0
    generate(SynthConfig(items=12), tmp_path / "lib")
    assert _digest(tmp_path / "cli") == _digest(tmp_path / "lib")


def test_large_scale_holds_a_test_split_out_of_val(large, tmp_path):
    root, _ = large
    held = tmp_path / "held"
    generate_benchmark(
        _config("large-scale", items=500, unlabeled=20, seed=7, image_size=48, test_holdout=0.5),
        held,
    )
    val = {r.item_id for r in read_annotations(held / "val.csv")}
    test = {r.item_id for r in read_annotations(held / "test.csv")}
    before = {r.item_id for r in read_annotations(root / "val.csv")}
    assert val | test == before and not val & test and 0 < len(test) < len(before)
    train = {r.item_id for r in read_annotations(root / "train.csv")}
    assert {r.item_id for r in read_annotations(held / "train.csv")} == train
    assert not (root / "test.csv").exists()  # no holdout asked: the paper's layout
