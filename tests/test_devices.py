"""The bf16 + channels_last CPU backbone: on where the CPU has native bf16, off on request;
the bf16 inference runtime keeps the answers."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from magneto import devices
from magneto.infer.checkpoint import load_checkpoint, model_from_checkpoint
from magneto.infer.predictor import Predictor
from magneto.model.architectures import build_model, speed_up_backbone
from magneto.model.config import ModelConfig
from tests.conftest import tiny_config


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)


def test_auto_means_the_bf16_backbone_only_on_a_capable_cpu(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.fast_cpu_backbone(cpu, "auto")
    assert not devices.fast_cpu_backbone(cpu, "off") and not devices.fast_cpu_backbone(cuda)
    tags_only = build_model(ModelConfig(vocab_size=5, architecture="tf-t"))
    assert not speed_up_backbone(tags_only, cpu, "auto")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert not devices.fast_cpu_backbone(cpu, "auto")


def test_the_flag_reads_the_cpu():
    flags = Path("/proc/cpuinfo").read_text()
    assert devices.cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_bf16_runtime_keeps_the_answers(native_bf16, checkpoint, tiny_data):
    _, images = tiny_data
    fast = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="bf16")
    exact = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="float32")
    assert (fast.runtime.name, exact.runtime.name) == ("bf16", "float32")
    trunk = fast.trunk.trunk  # a channels_last copy; the model's own trunk stays float32
    conv = next(p for p in trunk.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    own = next(p for p in fast.model.image_extractor.trunk.parameters() if p.dim() == 4)
    assert own.is_contiguous() and not fast.model.image_extractor.cpu_bf16
    words = load_checkpoint(checkpoint).vocabulary.words
    paths = [p for p in sorted(images.rglob("*.jpg")) if p.stat().st_size > 2000][:12]
    rng = np.random.default_rng(0)
    agree = total = 0
    for path in paths:
        tags = [words[i] for i in rng.choice(len(words), 6, replace=False)]
        a, b = fast.predict(path, tags), exact.predict(path, tags)
        scores_a = [t.score for t in a.tags]
        assert scores_a == pytest.approx([t.score for t in b.tags], abs=0.03)
        agree += sum(x.kept == y.kept for x, y in zip(a.tags, b.tags, strict=True))
        total += len(tags)
    assert agree / total >= 0.95
    # The trunk's output is float32 again, so the rest of the model runs as before.
    with torch.no_grad():
        assert fast.trunk(torch.randn(2, 3, 64, 64)).dtype == torch.float32


@pytest.mark.slow
def test_training_uses_it_for_the_frozen_trunk_and_caches_apart(native_bf16, tiny_data, tmp_path):
    data, images = tiny_data
    cache = tmp_path / "cache"
    for amp in ("auto", "off"):
        from magneto.training import run_training

        config = tiny_config(
            data,
            images,
            tmp_path / amp,
            epochs=1,
            amp=amp,
            feature_cache=True,
            feature_cache_dir=str(cache),
        )
        result = run_training(config)
        assert result.fit.history[0]["val_f1"] > 0
    assert len(list(cache.iterdir())) == 2  # one cache key per precision
    model = model_from_checkpoint(load_checkpoint(tmp_path / "auto" / "best_f1.ckpt"))
    assert model.image_extractor.cpu_bf16


def test_training_steps_run_under_bf16_autocast_on_a_native_bf16_cpu(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.training_amp("auto", cpu) == "bf16"
    assert devices.training_amp("off", cpu) == "off"
    assert devices.training_amp("auto", cuda) == "auto"  # autocast() already means bf16 there
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.training_amp("auto", cpu) == "auto"
    assert isinstance(devices.autocast(cpu, devices.training_amp("auto", cpu)), type(nullcontext()))


# How far a short bf16-autocast run may land from the float32 one (same seed, same batches).
BF16_F1_TOLERANCE = 0.03
BF16_LOSS_TOLERANCE = 0.03  # relative, per epoch


@pytest.mark.slow
def test_a_bf16_training_run_matches_the_float32_run(native_bf16, tmp_path):
    from magneto.sources.nuswide import prepare_nuswide
    from magneto.sources.synthetic.generator import SynthConfig, generate
    from magneto.training import run_training

    generate(SynthConfig(items=400, unlabeled=0, seed=3, image_size=64), tmp_path / "raw")
    prepare_nuswide(tmp_path / "raw", tmp_path / "prepared")
    histories = {}
    for amp in ("auto", "off"):  # auto: bf16 autocast steps here (native_bf16)
        config = tiny_config(
            tmp_path / "prepared",
            tmp_path / "raw" / "Flickr",
            tmp_path / amp,
            epochs=6,
            amp=amp,
            feature_cache=True,
            optimizer="adamw",
            lr=0.01,
            batch_size=16,
            seed=0,
        )
        histories[amp] = run_training(config).fit.history
    for bf16, exact in zip(histories["auto"], histories["off"], strict=True):
        assert bf16["train_loss"] == pytest.approx(exact["train_loss"], rel=BF16_LOSS_TOLERANCE)
        assert abs(bf16["val_f1"] - exact["val_f1"]) <= BF16_F1_TOLERANCE
    losses = [epoch["train_loss"] for epoch in histories["off"]]
    assert losses[-1] < 0.97 * losses[0]  # the runs moved: the comparison is not of two starts
