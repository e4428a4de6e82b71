"""Outlier-detection pre-training and fine-tuning from it."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from magneto.config import ConfigError
from magneto.data.vocabulary import Vocabulary
from magneto.infer.checkpoint import load_checkpoint
from magneto.model.architectures import build_model
from magneto.pretraining import run_pretraining
from magneto.pretraining.noise import RandomTagNoise
from magneto.training import run_training
from magneto.training.transfer import COPIED_BLOCKS, init_from_pretrained
from tests.conftest import tiny_config


def test_noise_labels_originals_1_and_added_0():
    noise = RandomTagNoise(vocab_size=30, ratio=1.0, max_len=8)
    rng = np.random.default_rng(0)
    sizes = set()
    for _ in range(500):
        tags, labels = noise([3, 4, 5], [], rng)
        assert tags[:3] == [3, 4, 5] and labels[:3] == [1, 1, 1]
        assert 1 <= len(tags) - 3 <= 3 and set(labels[3:]) == {0}
        assert not set(tags[3:]) & {3, 4, 5} and len(set(tags)) == len(tags)
        sizes.add(len(tags) - 3)
    assert sizes == {1, 2, 3}
    capped = RandomTagNoise(vocab_size=30, ratio=5.0, max_len=4)
    assert all(len(capped(list(range(4)), [], rng)[0]) == 4 for _ in range(20))


@pytest.fixture(scope="module")
def pretrained(tiny_data, tmp_path_factory):
    data, images = tiny_data
    out = tmp_path_factory.mktemp("pre") / "pretrain"
    return run_pretraining(tiny_config(data, images, out, pretrain_epochs=2))


@pytest.mark.slow
def test_pretraining_writes_a_gate_less_checkpoint(pretrained):
    ckpt = load_checkpoint(pretrained.checkpoint)
    assert pretrained.checkpoint.name == "pretrain.ckpt"
    assert ckpt.stage == "pretrain" and ckpt.model_config.gating is False
    assert not any(k.startswith("gate.") for k in ckpt.model_state)
    history = pretrained.fit.history
    assert len(history) == 2
    assert {"val_loss_image", "val_loss_tag"} <= set(history[0])
    assert "val_loss_final" not in history[0]  # L_u = L_it + L_t
    assert (pretrained.out / "latest.ckpt").is_file()


def test_pretraining_counts_epochs_from_1_and_a_finished_resume_writes_nothing(
    pretrained, tiny_data, tmp_path, caplog
):
    lines = [json.loads(x) for x in (pretrained.out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert load_checkpoint(pretrained.checkpoint).metrics["epoch"] in (1, 2)
    run = Path(shutil.copytree(pretrained.out, tmp_path / "pretrain"))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    data, images = tiny_data
    with caplog.at_level(logging.INFO, logger="magneto.train.stage"):
        again = run_pretraining(tiny_config(data, images, run, pretrain_epochs=2), resume=True)
    assert again.fit.nothing_to_do and len(again.fit.history) == 2
    assert f"nothing to do: {run} has already finished 2 of 2 epochs" in caplog.messages
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_fine_tuning_copies_exactly_the_named_blocks(pretrained, tiny_data):
    ckpt = load_checkpoint(pretrained.checkpoint)
    torch.manual_seed(123)
    model = build_model(ckpt.model_config.model_copy(update={"gating": True}))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    copied = init_from_pretrained(model, ckpt, ckpt.vocabulary)
    assert set(copied) == set(COPIED_BLOCKS) and all(n > 0 for n in copied.values())
    state = model.state_dict()
    for name, tensor in state.items():
        if name.startswith(COPIED_BLOCKS):
            assert torch.equal(tensor, ckpt.model_state[name]), name
        else:  # stream heads and the gate start fresh
            assert name.startswith(("tag_stream.head", "image_stream.head", "gate.")), name
            assert torch.equal(tensor, fresh[name]), name
    with pytest.raises(ConfigError, match="different vocabulary"):
        init_from_pretrained(model, ckpt, Vocabulary(["a", "b"]))
    wider = build_model(ckpt.model_config.model_copy(update={"gating": True, "d_model": 64}))
    with pytest.raises(ConfigError, match="use the same model settings"):
        init_from_pretrained(wider, ckpt, ckpt.vocabulary)


@pytest.mark.slow
def test_train_init_from_runs_and_nothing_is_frozen(pretrained, tiny_data, tmp_path):
    data, images = tiny_data
    result = run_training(
        tiny_config(data, images, tmp_path / "ft", epochs=1, init_from=str(pretrained.checkpoint))
    )
    ckpt = load_checkpoint(result.out / "latest.ckpt")
    pre = load_checkpoint(pretrained.checkpoint)
    # The copied, trainable blocks moved during fine-tuning (nothing was frozen) ...
    name = "tag_stream.encoder.layers.0.linear1.weight"
    assert not torch.equal(ckpt.model_state[name], pre.model_state[name])
    # ... while the frozen backbone is exactly the pre-trained one.
    name = "image_extractor.trunk.1.0.conv1.weight"
    assert torch.equal(ckpt.model_state[name], pre.model_state[name])


def test_pretraining_needs_its_sources(tiny_data, tmp_path):
    data, images = tiny_data
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "vocab.csv").write_bytes((data / "vocab.csv").read_bytes())
    with pytest.raises(ConfigError, match=r"unlabeled\.csv not found"):
        run_pretraining(tiny_config(partial, images, tmp_path / "p"))


@pytest.mark.slow
def test_pretraining_with_the_cache_computes_each_images_features_once(
    tiny_data, tmp_path, monkeypatch
):
    """One cache entry per source file, shared by the held-out split: no image runs twice."""
    from magneto.model.backbone import ImageFeatureExtractor

    data, images = tiny_data
    computed: list[int] = []
    trunk_features = ImageFeatureExtractor.trunk_features

    def counting(self, batch):
        computed.append(len(batch))
        return trunk_features(self, batch)

    monkeypatch.setattr(ImageFeatureExtractor, "trunk_features", counting)
    cache = tmp_path / "cache"
    config = tiny_config(
        data, images, tmp_path / "pre", feature_cache=True, feature_cache_dir=str(cache)
    )
    result = run_pretraining(config)
    assert len(result.fit.history) == 1
    entries = [json.loads(p.read_text())["items"] for p in sorted(cache.rglob("*.json"))]
    assert len(entries) == 2  # unlabeled.csv and train.csv; no entry per split
    cached_ids = [item_id for entry in entries for item_id in entry]
    assert len(cached_ids) == len(set(cached_ids)) > 0  # the sources share no image
    assert sum(computed) == len(cached_ids)  # every image through the backbone exactly once
