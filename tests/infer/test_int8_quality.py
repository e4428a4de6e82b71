"""The int8 runtime on a model that has learnt something: calibrated on the training split, it
keeps the same tags as float32 on the validation split (>= 99.5 % of decisions) and its F1 is
within 0.2 points."""

from __future__ import annotations

import numpy as np
import pytest

import magneto.devices as devices
from magneto.config import RunConfig, load_config
from magneto.configs import config_path
from magneto.data.annotation_files import read_annotations
from magneto.infer.predictor import Predictor
from magneto.infer.runtimes import Calibration
from magneto.training import evaluate_checkpoint, run_training

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def learnt(tmp_path_factory):
    """The synthetic profile's recipe on 1,000 items: (checkpoint, prepared dir, image dir)."""
    from magneto.sources.nuswide import prepare_nuswide
    from magneto.sources.synthetic.generator import SynthConfig, generate

    root = tmp_path_factory.mktemp("learnt")
    generate(SynthConfig(items=1000, unlabeled=0, seed=7), root / "raw")
    prepare_nuswide(root / "raw", root / "prepared")
    images = root / "raw" / "Flickr"
    overrides = {
        "data": str(root / "prepared"),
        "images": str(images),
        "out": str(root / "run"),
        "epochs": 12,
        "progress": False,
        "feature_cache_dir": str(root / "features"),
    }
    config = load_config(RunConfig, config_path("synthetic"), overrides)
    result = run_training(config)
    return result.fit.checkpoints["best_f1"], root / "prepared", images


@pytest.mark.slow
def test_int8_keeps_float32_decisions_and_f1(learnt, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_int8_dot", lambda: True)  # the test runs anywhere
    checkpoint, data, images = learnt
    calibration = Calibration(data / "train.csv", images)
    reference = evaluate_checkpoint(
        checkpoint, data / "val.csv", images, runtime="float32", workers=0, progress=False
    )
    int8 = evaluate_checkpoint(
        checkpoint,
        data / "val.csv",
        images,
        runtime="int8",
        calibration=calibration,
        workers=0,
        progress=False,
    )
    assert int8.runtime is not None and int8.runtime.name == "int8"
    assert reference.metrics.f1 > 0.85  # a model whose decisions mean something
    assert abs(int8.metrics.f1 - reference.metrics.f1) <= 0.002

    records = read_annotations(data / "val.csv")
    items = [(images / r.image_path, r.tags) for r in records]
    exact = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="float32")
    fast = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="int8")  # cached trunk
    kept = [
        [getattr(p, "tags", None) for p in predictor.predict_batch(items)]
        for predictor in (exact, fast)
    ]
    pairs = [
        (a.kept, b.kept)
        for tags_a, tags_b in zip(*kept, strict=True)
        if tags_a is not None and tags_b is not None  # a broken image fails in both
        for a, b in zip(tags_a, tags_b, strict=True)
    ]
    assert len(pairs) > 1500
    assert np.mean([a == b for a, b in pairs]) >= 0.995
