"""``magneto baseline``: the simple models are fit on train, thresholded on val, scored like
``magneto evaluate``, saved without pickle and scored again, and bad input is one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from magneto.cli.main import main
from magneto.training.baseline_files import load_baselines, save_baselines
from magneto.training.baselines import ImageSettings, fit_baselines, score_file

pytest.importorskip("sklearn")

WORDS = ["sky", "sun", "sea", "dog", "cat", "tree", "road", "car", "bird", "city"]


def planted(root: Path, items: int = 600, seed: int = 0) -> Path:
    """Tags whose importance depends on their neighbours: each word matters exactly when its
    partner (the word five places on) is on the item too. Every word matters about as often
    as any other, so a per-tag rate cannot tell; a model of the context can."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i},{word}\n" for i, word in enumerate(WORDS))
    (root / "vocab.csv").write_text("index,word\n" + rows)
    splits = {"train": [], "val": [], "test": []}
    for i in range(items):
        tags = list(rng.choice(WORDS, size=int(rng.integers(3, 7)), replace=False))
        labels = [int(WORDS[(WORDS.index(tag) + 5) % 10] in tags) for tag in tags]
        if not any(labels):
            labels[0] = 1
        split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
        splits[split].append((str(i), tags, labels))
    for split, rows in splits.items():
        with (root / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["item_id", "tags", "important_tags", "label", "image"])
            for item_id, tags, labels in rows:
                important = [t for t, y in zip(tags, labels, strict=True) if y]
                writer.writerow(
                    [item_id, ",".join(tags), ",".join(important), ",".join(map(str, labels)), ""]
                )
    return root


def test_the_context_model_finds_what_counting_cannot(tmp_path):
    data = planted(tmp_path / "data")
    baselines = fit_baselines(data)
    assert baselines.names == ["keep-all", "tag-prior", "tag-context"]
    results = score_file(baselines, data / "test.csv")
    f1 = {name: r.metrics.f1 for name, r in results.items()}
    assert f1["tag-context"] > f1["tag-prior"] + 0.03, f1
    keep_all = results["keep-all"].metrics
    assert keep_all.recall == 1.0 and keep_all.mean_kept > keep_all.mean_important


def test_saved_baselines_score_the_same_and_nothing_is_overwritten(tmp_path):
    data = planted(tmp_path / "data")
    baselines = fit_baselines(data)
    save_baselines(baselines, tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "baselines.json",
        "baselines.npz",
    ]
    again = load_baselines(tmp_path / "saved")
    assert again.thresholds == baselines.thresholds
    before = score_file(baselines, data / "test.csv", outliers=2, seed=3)
    after = score_file(again, data / "test.csv", outliers=2, seed=3)
    for name in before:
        assert after[name].as_dict() == before[name].as_dict()
    assert before["keep-all"].outlier_rate == 100.0  # keeping every tag keeps every outlier
    with pytest.raises(Exception, match="already exists"):
        save_baselines(baselines, tmp_path / "saved")


def test_the_image_baseline_reads_pooled_backbone_features(tiny_data, tmp_path):
    data, images = tiny_data
    settings = ImageSettings(images, backbone_weights=None, input_size=64, cache_dir=tmp_path)
    baselines = fit_baselines(data, settings)
    assert baselines.names[-1] == "tag-context+image"
    results = score_file(baselines, data / "val.csv", images=settings)
    assert set(results) == set(baselines.names)
    assert 0.0 < results["tag-context+image"].metrics.f1 <= 1.0
    without = score_file(baselines, data / "val.csv")  # no images given: left out, not faked
    assert "tag-context+image" not in without


def test_the_command_reports_val_and_test_and_refuses_in_one_line(tmp_path, capsys):
    data = planted(tmp_path / "data")
    out = tmp_path / "b"
    assert main(["baseline", "--data", str(data), "--out", str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {"val", "test"}
    assert set(figures["test"]) == {"keep-all", "tag-prior", "tag-context"}
    assert {"f1", "precision", "recall", "threshold"} <= set(figures["test"]["tag-context"])
    assert main(["baseline", "--data", str(data), "--load", str(out)]) == 0
    text = capsys.readouterr().out
    assert "== test.csv" in text and "tag-context" in text and "val F1" in text

    def usage(*argv: str) -> str:
        with pytest.raises(SystemExit) as exc:
            main(["baseline", *argv])
        assert exc.value.code == 2
        return capsys.readouterr().err.strip()

    marker = out / "baselines.json"
    kept = marker.read_text()
    assert "already holds files" in usage("--data", str(data), "--out", str(out))
    assert marker.read_text() == kept
    assert "not a folder" in usage("--data", str(tmp_path / "none"), "--out", str(tmp_path / "c"))
    assert "not allowed with" in usage("--data", str(data), "--out", "x", "--load", str(out))
    assert main(["baseline", "--data", str(data), "--load", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("magneto baseline: error:") and "\n" not in err
    assert "no saved baselines" in err
