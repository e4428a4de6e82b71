"""Inference runtimes: what each one computes against float32, how ``auto`` chooses and
remembers, and the one-line refusals of a runtime that cannot run here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import magneto.devices as devices
from magneto.cli.main import main
from magneto.data.annotation_files import read_annotations
from magneto.errors import MagnetoError
from magneto.infer.predictor import Predictor
from magneto.infer.runtimes import Calibration, RuntimeUnavailable, choose_runtime
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """A runtime cache of this test alone (nothing exported, measured or calibrated yet)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MAGNETO_CACHE_DIR", str(root))
    return root


@pytest.fixture
def calibration(tiny_data) -> Calibration:
    data, images = tiny_data
    return Calibration(data / "train.csv", images, items=24)


def real_images(tiny_data, count: int) -> list[Path]:
    _, images = tiny_data
    return [p for p in sorted(images.rglob("*.jpg")) if p.stat().st_size > 2000][:count]


def scores(predictor: Predictor, paths: list[Path], words: list[str]) -> np.ndarray:
    rng = np.random.default_rng(0)
    items = [(p, [words[i] for i in rng.choice(len(words), 5, replace=False)]) for p in paths]
    out = predictor.predict_batch(items, batch_size=8)
    return np.array([[t.score for t in p.tags] for p in out])  # type: ignore[union-attr]


def test_onnx_and_int8_trunks_answer_as_float32_does(checkpoint, tiny_data, calibration):
    reference = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="float32")
    words = reference.vocabulary.words
    paths = real_images(tiny_data, 12)
    expected = scores(reference, paths, words)
    onnx = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="onnx")
    assert (onnx.runtime.name, onnx.runtime.source) == ("onnx", "forced")
    np.testing.assert_allclose(scores(onnx, paths, words), expected, atol=1e-4)
    int8 = Predictor.from_checkpoint(
        checkpoint, device="cpu", runtime="int8", calibration=calibration
    )
    assert int8.trunk is not None and int8.trunk.name == "int8"
    got = scores(int8, paths, words)
    assert not np.allclose(got, expected, atol=1e-6)  # it is another computation...
    np.testing.assert_allclose(got, expected, atol=0.05)  # ...close to float32's


def test_auto_measures_once_then_reads_its_choice(checkpoint, fresh_cache, caplog):
    with caplog.at_level(logging.INFO, logger="magneto.runtime"):
        first = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=4)
    choice = first.runtime
    assert choice.source == "measured" and choice.requested == "auto"
    assert choice.name in choice.timings_ms and "float32" in choice.timings_ms
    assert choice.timings_ms[choice.name] == min(
        ms for name, ms in choice.timings_ms.items() if name not in choice.skipped
    )
    assert all(choice.agreement[name] >= 0.995 for name in choice.timings_ms if name != "float32")
    assert "int8" in choice.skipped and "calibration" in choice.skipped["int8"]
    line = next(r.getMessage() for r in caplog.records if r.name == "magneto.runtime")
    assert line.startswith(f"runtime {choice.name} (measured; ms per batch of 4: ")
    assert all(name in line for name in choice.timings_ms)
    assert first.info["runtime"]["name"] == choice.name
    again = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=4)
    assert again.runtime.source == "cached" and again.runtime.name == choice.name
    assert again.runtime.timings_ms == choice.timings_ms
    other = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=2)
    assert other.runtime.source == "measured"  # another batch size is another question
    assert len(list(fresh_cache.rglob("choice.*.json"))) == 2


def test_int8_is_cached_with_its_calibration(checkpoint, fresh_cache, calibration, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_int8_dot", lambda: True)
    first = Predictor.from_checkpoint(
        checkpoint, device="cpu", batch_size=4, calibration=calibration
    )
    assert "int8" in first.runtime.timings_ms and "int8" in first.runtime.agreement
    [record] = list(fresh_cache.rglob("int8.json"))
    saved = json.loads(record.read_text())
    assert saved["calibration"]["items"] == 24 and saved["agreement"] >= 0.995
    assert (record.parent / saved["file"]).is_file()
    # Later start-ups find the int8 trunk without the images.
    later = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="int8")
    assert later.trunk is not None and later.trunk.name == "int8"


def test_forced_runtimes_that_cannot_run_say_why_in_one_line(
    checkpoint, fresh_cache, calibration, monkeypatch
):
    with pytest.raises(RuntimeUnavailable, match="no calibration yet") as empty:
        Predictor.from_checkpoint(checkpoint, device="cpu", runtime="int8")
    assert "\n" not in str(empty.value)
    monkeypatch.setattr(devices, "cpu_has_int8_dot", lambda: False)
    with pytest.raises(RuntimeUnavailable, match="no int8 dot-product instructions"):
        Predictor.from_checkpoint(checkpoint, device="cpu", runtime="int8", calibration=calibration)
    auto = Predictor.from_checkpoint(checkpoint, device="cpu", calibration=calibration)
    assert "int8 dot-product" in auto.runtime.skipped["int8"]  # auto leaves it out instead
    tags_only = build_model(ModelConfig(vocab_size=5, architecture="tf-t"))
    with pytest.raises(RuntimeUnavailable, match="reads no images"):
        choose_runtime(tags_only, device=torch.device("cpu"), requested="onnx", input_size=64)
    trunk, choice = choose_runtime(tags_only, device=torch.device("cpu"), input_size=64)
    assert trunk is None and choice.source == "only"


def test_forced_bf16_without_native_bf16_warns_and_still_runs(checkpoint, monkeypatch, caplog):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="magneto.runtime"):
        forced = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="bf16")
    assert forced.runtime.name == "bf16"
    assert any("no native bf16" in r.getMessage() for r in caplog.records)
    auto = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=2)
    assert "bf16" in auto.runtime.skipped


def test_calibration_sources_are_checked(tiny_data, tmp_path):
    data, images = tiny_data
    with pytest.raises(MagnetoError, match="calibration source not found"):
        Calibration(tmp_path / "none.csv")
    with pytest.raises(MagnetoError, match="at least 1"):
        Calibration(data / "train.csv", images, items=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MagnetoError, match="names no images"):
        Calibration(tmp_path / "empty").image_paths()
    folder = Calibration(images, items=5)
    assert len(folder.image_paths()) == 5
    batch = next(folder.batches(64, batch_size=5))
    assert batch.shape[1:] == (3, 64, 64) and batch.dtype == np.float32
    named = [r.image_path for r in read_annotations(data / "train.csv")][:3]
    from_file = Calibration(data / "train.csv", images, items=3).image_paths()
    assert from_file == [images / n for n in named]


def test_the_cli_offers_the_runtimes_and_refuses_in_one_line(
    checkpoint, tiny_data, fresh_cache, capsys
):
    _, images = tiny_data
    [image] = real_images(tiny_data, 1)
    base = ["predict", "--checkpoint", str(checkpoint), str(image), "--tags", "sky,dog"]
    assert main([*base, "--runtime", "int8"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("magneto predict: error: --runtime int8 cannot run here: no calib")
    assert "\n" not in err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--calibration-images", str(images)])
    assert exc.value.code == 2 and "--calibration FILE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--runtime", "fp8"])
    assert exc.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err
    assert main([*base, "--runtime", "onnx", "--json"]) == 0
    assert '"tags"' in capsys.readouterr().out
