"""The last wrong statuses and messages: each wrong input is one line naming what is wrong,
status 2 for usage (flags), 1 for what goes wrong while running (files, environment)."""

from __future__ import annotations

import os

import torch

from magneto.cli.main import main
from tests.cli.test_cli_errors import tags_checkpoint

__all__ = ["tags_checkpoint"]  # the fixture, shared with the other CLI tests


class Reduces:
    """Pickled as a call to ``os.system``: what a malicious checkpoint carries."""

    def __reduce__(self):
        return (os.system, ("echo never",))


def status_and_line(argv, capsys) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return status, err


def test_usage_errors_are_status_2(tags_checkpoint, capsys, monkeypatch):
    monkeypatch.delenv("MAGNETO_API_KEY", raising=False)
    assert status_and_line(["quickstart", "--items", "3"], capsys)[0] == 2
    argv = ["serve", "--checkpoint", str(tags_checkpoint), "--metrics-require-key"]
    status, line = status_and_line([*argv, "--port", "0"], capsys)
    assert status == 2 and "needs an api_key" in line
    monkeypatch.setenv("MAGNETO_METRICS_REQUIRE_KEY", "true")  # the environment's: status 1
    argv = ["serve", "--checkpoint", str(tags_checkpoint), "--port", "0"]
    assert status_and_line(argv, capsys)[0] == 1


def test_files_that_are_wrong_are_named(tags_checkpoint, checkpoint, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"lr: 0.1\nnote: caf\xe9\n")
    status, line = status_and_line(
        ["train", "--config", str(config), "--data", "d", "--out", "o"], capsys
    )
    assert status == 1 and f"{config}: not UTF-8 text" in line
    argv = ["summarize", "--checkpoint", str(tags_checkpoint), "--data", str(tmp_path)]
    status, line = status_and_line([*argv, "--out", str(tmp_path / "r.jsonl")], capsys)
    assert status == 1 and "is a directory" in line and "not found" not in line
    (tmp_path / "m.onnx").mkdir()
    argv = ["export", "--checkpoint", str(tags_checkpoint), "--format", "onnx"]
    status, line = status_and_line(
        [*argv, "--out", str(tmp_path / "m.onnx"), "--overwrite"], capsys
    )
    assert status == 1 and "is a directory" in line and ".tmp" not in line
    for device in ("/dev/zero",):  # an image model: it reads the image
        argv = ["predict", "--checkpoint", str(checkpoint), "--image", device, "--tags", "a"]
        status, line = status_and_line(argv, capsys)
        assert status == 1 and "not a regular file" in line


def test_a_malicious_reference_checkpoint_is_refused_naming_the_global(tmp_path, capsys):
    path = tmp_path / "best_f1.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "config": Reduces()}, path)
    (tmp_path / "vocab.csv").write_text("index,word\n0,sky\n")
    argv = ["import-reference", "--checkpoint", str(path), "--vocab", str(tmp_path / "vocab.csv")]
    status, line = status_and_line([*argv, "--out", str(tmp_path / "o.ckpt")], capsys)
    assert status == 1 and "posix.system" in line and "weights_only" not in line
    assert not (tmp_path / "o.ckpt").exists()
