"""Every wrong input is one line on stderr and a documented status: 2 usage, 1 runtime.

Usage errors exit through ``SystemExit(2)`` like argparse's own; runtime errors make
``main`` return 1. A few cases run the real ``python -m magneto.cli.main`` to prove that no
traceback reaches the terminal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from magneto.cli.main import main
from magneto.data.vocabulary import Vocabulary
from magneto.infer.checkpoint import Checkpoint, save_checkpoint
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.train.metrics import SetMetrics
from magneto.training.evaluate import EvaluationResult

REPO = Path(__file__).resolve().parents[2]
WORDS = ["sky", "sea", "sun", "dog", "cat", "tree"]


def run(argv: list[str]) -> int:
    """``main``'s status, whether it returned it or exited with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def tags_checkpoint(tmp_path_factory) -> Path:
    """A small tags-only (TF-t) checkpoint: no images needed to evaluate it."""
    torch.manual_seed(0)
    config = ModelConfig(
        architecture="tf-t", vocab_size=len(WORDS), d_model=16, heads=2, d_ff=32, tag_layers=1
    )
    model = build_model(config)
    checkpoint = Checkpoint(config, Vocabulary(WORDS), model.state_dict(), threshold=0.5)
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("ckpt") / "tags.ckpt")


# -- usage errors: status 2, "magneto CMD: error: argument --FLAG: ..." -----------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        *[
            (
                [command, *required, "--device", "banana"],
                f"magneto {command}: error: argument --device: invalid value 'banana': "
                "not a device name",
            )
            for command, required in (
                ("train", []),
                ("pretrain", []),
                ("evaluate", ["--checkpoint", "c", "--data", "d"]),
                ("predict", ["--checkpoint", "c", "--tags", "a"]),
                ("summarize", ["--checkpoint", "c", "--data", "d", "--out", "o.jsonl"]),
                ("serve", []),
            )
        ],
        (["train", "--lr", "abc"], "magneto train: error: argument --lr: invalid value 'abc'"),
        (["train", "--epochs", "0"], "magneto train: error: argument --epochs: invalid value '0'"),
        (["train", "--loss", "hinge"], "argument --loss: invalid value 'hinge': Input should be"),
        (["train", "--model", "bert"], "magneto train: error: argument --model: invalid value"),
        (["train", "--freeze-backbone", "7"], "argument --freeze-backbone: invalid value '7'"),
        (["pretrain", "--pretrain-sources", "val"], "argument --pretrain-sources: invalid value"),
        (["train", "--loss-params", "{oops"], "argument --loss-params: invalid value '{oops'"),
        (["predict", "--checkpoint", "c", "--tags", "a", "--top-k", "0"], "argument --top-k:"),
        (["predict", "--checkpoint", "c", "--tags", "a", "--threshold", "2"], "between 0 and 1"),
        (["evaluate", "--checkpoint", "c", "--data", "d", "--threshold", "x"], "not a number"),
        (["serve", "--port", "abc"], "magneto serve: error: argument --port: invalid value"),
        (["serve", "--max-batch-size", "0"], "argument --max-batch-size: invalid value '0'"),
        (["synth", "--out", "x", "--items", "3"], "argument --items: invalid value '3'"),
        (["export", "--checkpoint", "c", "--format", "tflite", "--out", "o"], "invalid choice"),
        (["quickstart", "--port", "70000"], "argument --port: '70000' must be at most 65535"),
        # unknown flags are named with the subcommand, as argparse names its own errors
        (["train", "--lrr", "0.1"], "magneto train: error: unrecognized arguments: --lrr 0.1"),
        (["prepare", "nuswide", "--root", "r", "--out", "o", "--x"], "magneto prepare nuswide:"),
        # a stage's own flags are refused on the other stage, naming where they belong
        (["train", "--noise-ratio", "2"], "--noise-ratio is an option of 'magneto pretrain' only"),
        (["train", "--pretrain-epochs", "2"], "is an option of 'magneto pretrain' only"),
        (["pretrain", "--tad-add", "0.1"], "--tad-add is an option of 'magneto train' only"),
        (["pretrain", "--no-aux"], "--aux is an option of 'magneto train' only"),
        (["pretrain", "--threshold", "0.5"], "--threshold is an option of 'magneto train' only"),
        # checks across flags, made once the whole config is built
        (["train", "--d-model", "30"], "magneto train: error: invalid model: d_model (30) must"),
        (["train", "--loss", "focal", "--loss-params", '{"gama": 1}'], "no parameter 'gama'"),
        # options a stage cannot run without
        (["train", "--out", "o"], "magneto train: error: no dataset given: pass --data DIR"),
        (["pretrain", "--data", "d"], "no run directory given: pass --out DIR"),
        (["train", "--resume"], "--resume needs --out RUN_DIR"),
        (["train", "--resume", "--out", "o", "--config", "c.yaml"], "drop --config"),
    ],
)
def test_usage_errors_are_one_line_and_status_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(argv) == 2
    line = one_line(capsys)
    assert expected in line, line
    assert line.startswith(f"magneto {argv[0]}")
    assert line.endswith("--help)")  # points at the subcommand's help


def test_serve_without_a_checkpoint_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("MAGNETO_CHECKPOINT", raising=False)
    assert run(["serve"]) == 2
    assert "no checkpoint: pass --checkpoint or set MAGNETO_CHECKPOINT" in one_line(capsys)


def test_a_config_file_error_names_the_file_and_is_status_1(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("lr: fast\n")
    argv = ["train", "--config", str(config), "--data", "d", "--out", "o"]
    assert run(argv) == 1
    assert one_line(capsys) == (
        f"magneto train: error: {config}: invalid lr: Input should be a valid number, "
        "unable to parse string as a number (got 'fast')"
    )
    # a valid file that a flag makes inconsistent: the flag is to blame (status 2)
    config.write_text("loss: focal\n")
    assert run(["train", "--config", str(config), "--loss-params", '{"beta": 1}']) == 2
    line = one_line(capsys)
    assert "no parameter 'beta'" in line and str(config) not in line


# -- runtime errors: status 1, "magneto CMD: error: ..." ----------------------------------------
def test_train_out_naming_a_regular_file(tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    assert run(["train", "--data", str(tmp_path), "--out", str(out)]) == 1
    assert one_line(capsys) == (
        f"magneto train: error: --out {out} is a file, not a run directory; choose another --out"
    )
    assert out.read_text() == "keep me"


def _not_served(*_, **__):
    raise AssertionError("the server must not start for a bad checkpoint")


@pytest.mark.parametrize("kind", ["text", "truncated", "pickle", "foreign"])
def test_serve_refuses_a_bad_checkpoint_before_starting(
    kind, tags_checkpoint, tmp_path, capsys, monkeypatch
):
    import magneto.service.server as server

    monkeypatch.setattr(server, "serve", _not_served)
    path = tmp_path / f"{kind}.ckpt"
    if kind == "text":
        path.write_text("# MAGNeto\n\nnot a checkpoint\n")
    elif kind == "truncated":
        path.write_bytes(tags_checkpoint.read_bytes()[:1000])
    elif kind == "pickle":  # an object torch's safe loader refuses to unpickle
        torch.save({"format": "magneto", "payload": argparse.Namespace(x=1)}, path)
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    assert run(["serve", "--checkpoint", str(path), "--port", "0"]) == 1
    line = one_line(capsys)
    assert line.startswith("magneto serve: error: ") and str(path) in line, line


def test_serve_checks_the_environment_device_too(tags_checkpoint, capsys, monkeypatch):
    import magneto.service.server as server

    monkeypatch.setattr(server, "serve", _not_served)
    monkeypatch.setenv("MAGNETO_DEVICE", "banana")
    assert run(["serve", "--checkpoint", str(tags_checkpoint), "--port", "0"]) == 1
    assert "MAGNETO_DEVICE: invalid value 'banana': not a device name" in one_line(capsys)


def test_serve_starts_the_server_with_a_good_checkpoint(tags_checkpoint, monkeypatch):
    import magneto.service.server as server

    started = {}
    monkeypatch.setattr(server, "serve", lambda **kw: started.update(kw))
    assert run(["serve", "--checkpoint", str(tags_checkpoint), "--port", "0"]) == 0
    with started.pop("listen_socket"):  # bound before the checkpoint is read
        assert started == {"checkpoint": str(tags_checkpoint), "port": "0"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'item_id,tags,important_tags\n1,sky,sky\n2,"sea,s\xe9a",sea\n', ":3: not UTF-8 text"),
        (
            b"item_id,tags,important_tags\n1,sky,sky\n2," + b"a" * 10_000_000 + b",sky\n",
            ":3: a field is longer than the CSV limit of 131072 characters",
        ),
    ],
)
def test_evaluate_names_file_and_line_of_bad_data(
    content, expected, tags_checkpoint, tmp_path, capsys
):
    data = tmp_path / "val.csv"
    data.write_bytes(content)
    argv = ["evaluate", "--checkpoint", str(tags_checkpoint), "--data", str(data)]
    assert run([*argv, "--workers", "0", "--json"]) == 1
    assert one_line(capsys).startswith(f"magneto evaluate: error: {data}{expected}")


def test_evaluate_table_names_the_skipped_items():
    metrics = SetMetrics(10, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, None)
    skipped = [(f"id{i}", "cannot decode") for i in range(7)]
    table = EvaluationResult(metrics, 0.5, 0, None, skipped=skipped).table()
    row = next(line for line in table.splitlines() if line.startswith("skipped (bad image)"))
    assert row.endswith("7: id0, id1, id2, id3, id4, ... (2 more)")


def test_an_unexpected_error_is_still_one_line(monkeypatch, capsys):
    from magneto.cli import run_commands

    def boom(args):
        raise RuntimeError("CUDA error: out of memory\nmore detail")

    monkeypatch.setattr(run_commands, "run_training_command", boom)  # registered when main builds
    assert run(["train"]) == 1
    assert one_line(capsys) == (
        "magneto train: error: RuntimeError: CUDA error: out of memory "
        "(unexpected; run `magneto -v ...` for the traceback)"
    )


# -- the real command: nothing but the one line reaches the terminal ---------------------------
@pytest.mark.parametrize(
    ("argv", "status", "expected"),
    [
        (["predict", "--checkpoint", "c", "--tags", "a", "--device", "banana"], 2, "--device"),
        (["serve", "--checkpoint", str(REPO / "README.md"), "--port", "0"], 1, "README.md"),
    ],
)
@pytest.mark.slow
def test_the_console_command_prints_no_traceback(argv, status, expected):
    result = subprocess.run(
        [sys.executable, "-m", "magneto.cli.main", *argv],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "default"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"magneto {argv[0]}: error: ") and expected in lines[0]
