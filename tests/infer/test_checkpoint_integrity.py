"""Corrupt checkpoints are refused by every reader, and resume never trains on one.

torch does not check the zip's CRCs, so bytes flipped inside a tensor's stored entry load as
other numbers; only the digest each checkpoint stores can tell.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from magneto.cli.main import main
from magneto.data.vocabulary import Vocabulary
from magneto.infer.checkpoint import (
    DIGEST_KEY,
    Checkpoint,
    CheckpointError,
    CorruptCheckpointError,
    load_checkpoint,
    save_checkpoint,
    tensor_digest,
)
from magneto.infer.predictor import Predictor
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig

CORRUPT = "is corrupt: its tensors do not match the digest stored when it was written"


def flip_tensor_bytes(path: Path, count: int = 16) -> str:
    """Invert ``count`` bytes in the middle of the largest tensor entry (``<archive>/data/<n>``,
    stored uncompressed); the zip stays readable. Returns the entry's name."""
    with zipfile.ZipFile(path) as archive:
        entries = [i for i in archive.infolist() if re.search(r"/data/\d+$", i.filename)]
    entry = max(entries, key=lambda i: i.file_size)
    assert entry.compress_type == zipfile.ZIP_STORED and entry.file_size > 4 * count
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", raw[entry.header_offset + 26 : entry.header_offset + 30]
    )
    start = entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2
    raw[start : start + count] = bytes(b ^ 0xFF for b in raw[start : start + count])
    path.write_bytes(bytes(raw))
    return entry.filename


@pytest.fixture
def run_dir(checkpoint, tmp_path) -> Path:
    """A copy of a finished two-epoch training run (best_f1, best_loss, latest, logs)."""
    return Path(shutil.copytree(checkpoint.parent, tmp_path / "run"))


def test_flipped_tensor_bytes_load_in_torch_but_are_refused_naming_the_file(run_dir):
    path = run_dir / "best_f1.ckpt"
    good = torch.load(path, weights_only=True)["model_state"]
    flip_tensor_bytes(path)
    bad = torch.load(path, weights_only=True)["model_state"]  # torch itself notices nothing
    assert any(not torch.equal(good[k], bad[k]) for k in good)
    with pytest.raises(CorruptCheckpointError, match=re.escape(f"{path} {CORRUPT}")):
        load_checkpoint(path)
    with pytest.raises(CorruptCheckpointError, match=re.escape(str(path))):
        Predictor.from_checkpoint(path, device="cpu")  # predict, serve and export load so too


def test_a_corrupt_optimizer_state_is_refused_too(run_dir):
    """latest.ckpt's largest tensors may be the optimizer's: they are covered as well."""
    path = run_dir / "latest.ckpt"
    payload = torch.load(path, weights_only=True)
    state = payload["training_state"]["optimizer"]["state"]
    first = next(iter(state.values()))["momentum_buffer"]
    first.view(-1)[0] += 1.0
    torch.save(payload, path)  # the stale digest stays in the payload
    with pytest.raises(CorruptCheckpointError, match=re.escape(str(path))):
        load_checkpoint(path)


def test_resume_refuses_a_corrupt_latest_and_keeps_best_f1(run_dir, capsys):
    flip_tensor_bytes(run_dir / "latest.ckpt")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code = main(["train", "--resume", "--out", str(run_dir), "--epochs", "4", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == f"magneto train: error: {run_dir / 'latest.ckpt'} {CORRUPT}"
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after == before  # best_f1.ckpt, metrics.jsonl, ... byte-identical


def test_every_written_checkpoint_carries_a_digest_of_all_its_tensors(run_dir):
    payload = torch.load(run_dir / "latest.ckpt", weights_only=True)
    stored = payload.pop(DIGEST_KEY)
    assert re.fullmatch(r"[0-9a-f]{64}", stored) and tensor_digest(payload) == stored
    reordered = dict(reversed(list(payload.items())))
    assert tensor_digest(reordered) == stored  # a fixed order, not the dict's
    payload["training_state"]["rng"]["torch"][0] ^= 1
    assert tensor_digest(payload) != stored


@pytest.mark.slow
def test_an_imported_reference_checkpoint_gets_a_digest(tmp_path):
    from tests.infer.test_reference_import import reference_state, save_reference, save_vocab

    ref = save_reference(tmp_path / "best_f1.pth", reference_state())
    vocab = save_vocab(tmp_path / "vocab.csv")
    out = tmp_path / "imported.ckpt"
    assert (
        main(
            ["import-reference", "--checkpoint", str(ref), "--vocab", str(vocab), "--out", str(out)]
        )
        == 0
    )
    assert DIGEST_KEY in torch.load(out, weights_only=True)
    load_checkpoint(out)
    flip_tensor_bytes(out)
    with pytest.raises(CorruptCheckpointError, match=re.escape(str(out))):
        load_checkpoint(out)


def _small(**extra) -> Checkpoint:
    config = ModelConfig(vocab_size=3, architecture="tf-t", d_model=16, heads=2, d_ff=32)
    return Checkpoint(
        model_config=config,
        vocabulary=Vocabulary(["a", "b", "c"]),
        model_state=build_model(config).state_dict(),
        **extra,
    )


def test_a_version_1_file_loads_with_a_warning_and_1_based_epochs(tmp_path, caplog):
    """Written before digests: unchecked, but still served and resumable."""
    state = {
        "epoch": 1,  # version 1: the last finished epoch, 0-based
        "history": [{"epoch": 0, "val_f1": 0.1}, {"epoch": 1, "val_f1": 0.2}],
        "rng": {"torch": torch.get_rng_state()},
    }
    payload = _small(metrics={"epoch": 1, "val_f1": 0.2}, training_state=state).to_payload()
    del payload[DIGEST_KEY]
    payload["version"] = 1
    path = tmp_path / "old.ckpt"
    torch.save(payload, path)
    with caplog.at_level(logging.WARNING, logger="magneto.infer.checkpoint"):
        loaded = load_checkpoint(path)
    assert f"{path} predates checkpoint digests" in caplog.text
    assert loaded.metrics["epoch"] == 2
    assert loaded.training_state["epoch"] == 2  # two epochs done
    assert [r["epoch"] for r in loaded.training_state["history"]] == [1, 2]


def test_a_current_file_without_its_digest_is_refused(tmp_path):
    payload = _small().to_payload()
    del payload[DIGEST_KEY]
    path = tmp_path / "stripped.ckpt"
    torch.save(payload, path)
    with pytest.raises(CorruptCheckpointError, match="lacks the tensor digest"):
        load_checkpoint(path)


class _Call:
    """Pickles as a call of ``func``; pickling runs nothing, and neither may loading."""

    def __init__(self, func) -> None:
        self.func = func

    def __reduce__(self):
        return (self.func, ("touch /nonexistent/never-run",))


@pytest.mark.parametrize(
    ("func", "name"),
    [(os.system, f"{os.system.__module__}.system"), (shutil.rmtree, "shutil.rmtree")],
)
def test_a_pickled_global_is_refused_with_our_own_line(tmp_path, func, name):
    path = tmp_path / "evil.ckpt"
    torch.save({"format": "magneto-checkpoint", "version": 2, "x": _Call(func)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message == (
        f"refusing {path}: it holds a pickled reference to the Python global {name}, "
        "and MAGNeto never unpickles code or objects (only tensors and plain values)"
    )
    assert "weights_only" not in message and "succeed" not in message


def test_a_round_trip_keeps_the_digest_valid(tmp_path):
    path = save_checkpoint(_small(metrics={"epoch": 3}), tmp_path / "a.ckpt")
    loaded = load_checkpoint(path)
    again = load_checkpoint(save_checkpoint(loaded, tmp_path / "b.ckpt"))
    assert again.metrics["epoch"] == 3  # current files are never renumbered
