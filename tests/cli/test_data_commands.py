from __future__ import annotations

import json
import subprocess
import sys

import pytest

from magneto.cli.main import main


def test_synth_then_prepare_end_to_end(tmp_path, capsys):
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    assert main(["synth", "--out", str(raw), "--items", "40", "--unlabeled", "10", "--json"]) == 0
    synth = json.loads(capsys.readouterr().out)
    assert synth["expected_prepared"] == 38
    assert main(["prepare", "nuswide", "--root", str(raw), "--out", str(prepared)]) == 0
    text = capsys.readouterr().out
    assert f"prepared dataset written to {prepared}" in text
    assert "train: " in text and "mean important ratio" in text
    for name in ("train.csv", "val.csv", "vocab.csv", "unlabeled.csv", "summary.json"):
        assert (prepared / name).is_file()
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["train_items"] + summary["val_items"] == 38


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["synth"], "the following arguments are required: --out"),
        (["synth", "--out", "x", "--items", "many"], "--items: invalid value 'many'"),
        (["synth", "--out", "x", "--items", "3"], "greater than or equal to 10"),
        (["synth", "--out", "x", "--test-fraction", "1"], "--test-fraction: invalid value"),
        (["prepare", "nuswide", "--root", "r"], "required: --out"),
        (["prepare", "coco", "--root", "r", "--out", "o"], "invalid choice: 'coco'"),
        (
            ["prepare", "nuswide", "--root", "r", "--out", "o", "--check-images", "maybe"],
            "invalid choice",
        ),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert fragment in err


def test_runtime_errors_give_one_line_and_exit_1(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["synth", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("magneto synth: error: ") and len(err.splitlines()) == 1
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert (
        main(["prepare", "nuswide", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err == (
        f"magneto prepare nuswide: error: {tmp_path / 'none'}: NUS-WIDE root directory not found"
    )


@pytest.mark.slow
def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "magneto.cli.main", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("magneto ")
