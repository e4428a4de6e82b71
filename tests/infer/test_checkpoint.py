from __future__ import annotations

import pickle

import pytest
import torch

from magneto.data.vocabulary import Vocabulary
from magneto.infer.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig


def _checkpoint(**extra) -> Checkpoint:
    config = ModelConfig(vocab_size=3, architecture="tf-t", d_model=16, heads=2, d_ff=32)
    model = build_model(config)
    return Checkpoint(
        model_config=config,
        vocabulary=Vocabulary(["a", "b", "c"]),
        model_state=model.state_dict(),
        input_size=64,
        threshold=0.37,
        metrics={"val_f1": 0.5, "epoch": 2},
        config={"lr": 0.1},
        **extra,
    )


def test_round_trip_is_self_describing(tmp_path):
    state = {"epoch": 1, "rng": {"torch": torch.get_rng_state()}, "history": [{"a": 1.0}]}
    path = save_checkpoint(_checkpoint(training_state=state), tmp_path / "x" / "run.ckpt")
    loaded = load_checkpoint(path)
    assert loaded.vocabulary.words == ["a", "b", "c"]
    assert loaded.threshold == 0.37 and loaded.input_size == 64
    assert loaded.model_config.architecture == "tf-t" and loaded.model_config.vocab_size == 3
    assert loaded.metrics["val_f1"] == 0.5
    assert torch.equal(loaded.training_state["rng"]["torch"], state["rng"]["torch"])
    model = build_model(loaded.model_config)
    model.load_state_dict(loaded.model_state)
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["run.ckpt"]  # no temp file left


def test_refuses_foreign_and_unsafe_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="is not a MAGNeto checkpoint"):
        load_checkpoint(plain)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"format": "magneto-checkpoint", "x": Evil()}))
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as caught:
        load_checkpoint(evil)
    assert "weights_only" not in str(caught.value)  # never torch's advice to unpickle it
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(garbage)


def test_version_mismatch_is_explained(tmp_path):
    payload = _checkpoint().to_payload()
    payload["version"] = 99
    path = tmp_path / "future.ckpt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(_checkpoint(), tmp_path / "latest.ckpt")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(_checkpoint(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.ckpt"]
