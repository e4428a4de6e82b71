"""The train / pretrain / evaluate / predict / quickstart commands, as users run them."""

from __future__ import annotations

import json

import pytest

from magneto.cli.main import main
from magneto.data.annotation_files import read_annotations
from tests.conftest import config_flags
from tests.readiness import wait_until_ready


@pytest.fixture(scope="module")
def cli_run(tiny_data, tmp_path_factory):
    data, images = tiny_data
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *config_flags(data, images, out, "--epochs", "2", "--seed", "3")]) == 0
    return data, images, out


@pytest.mark.slow
def test_train_prints_where_the_checkpoints_are(cli_run, capsys):
    _, _, out = cli_run
    assert (out / "best_f1.ckpt").is_file()


def test_evaluate_table_and_json(cli_run, capsys):
    data, images, out = cli_run
    args = [
        "evaluate",
        "--checkpoint",
        str(out / "best_f1.ckpt"),
        "--data",
        str(data / "val.csv"),
        "--images",
        str(images),
        "--outliers",
        "2",
        "--workers",
        "0",
    ]
    assert main([*args, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for key in (
        "precision",
        "recall",
        "f1",
        "micro_f1",
        "mean_kept",
        "outlier_rate",
        "threshold",
        "outliers_per_item",
        "f1_with_outliers",
        "items",
    ):
        assert key in figures, key
    assert 0.0 <= figures["outlier_rate"] <= 100.0 and figures["outliers_per_item"] == 2
    assert figures["items"] > 0 and figures["skipped_items"] == sorted(figures["skipped_items"])
    assert main([*args, "--seed", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == figures["f1"]  # outliers don't touch F1
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "outlier rate (K=2)" in table and "micro-F1" in table and "F1" in table


def test_predict_one_image(cli_run, capsys):
    data, images, out = cli_run
    record = read_annotations(data / "train.csv")[0]
    args = [
        "predict",
        "--checkpoint",
        str(out / "best_f1.ckpt"),
        "--image",
        str(images / record.image_path),
        "--tags",
        ",".join(record.tags) + ",Unicorn",
    ]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [t["tag"] for t in result["tags"]] == [*record.tags, "Unicorn"]
    assert result["unknown_tags"] == ["Unicorn"]
    assert all(t["score"] is None for t in result["tags"] if not t["known"])
    assert main([*args, "--top-k", "1", "--threshold", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("kept: ") and text.count(" keep ") == 1 and "unknown" in text


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["train", "--lr", "fast"], 2, "argument --lr: invalid value 'fast'"),
        (["train", "--epochs", "0"], 2, "argument --epochs: invalid value '0'"),
        (["train", "--model", "bert"], 2, "argument --model: invalid value 'bert'"),
        (["train", "--freeze-backbone", "7"], 2, "argument --freeze-backbone"),
        (["train", "--loss", "hinge", "--data", "D", "--out", "O"], 2, "argument --loss"),
        (["train", "--lrr", "0.1"], 2, "unrecognized arguments: --lrr"),
        (["train", "--out", "somewhere"], 2, "no dataset given: pass --data DIR"),
        (["train", "--data", "nowhere", "--out", "o"], 1, "dataset directory not found"),
        (["train", "--resume"], 2, "--resume needs --out RUN_DIR"),
        (["train", "--resume", "--out", "o"], 1, "nothing to resume"),
        (["train", "--config", "missing.yaml"], 1, "config file not found"),
        (["train", "--threshold", "high"], 2, "argument --threshold: invalid value 'high'"),
        (["evaluate", "--checkpoint", "none.ckpt", "--data", "x.csv"], 1, "checkpoint not found"),
        (
            ["evaluate", "--checkpoint", "c", "--data", "d", "--outliers", "-1"],
            2,
            "must be at least 0",
        ),
        (["predict", "--checkpoint", "none.ckpt", "--tags", "a"], 1, "checkpoint not found"),
        (["predict", "--checkpoint", "c"], 2, "pass --tags"),
    ],
)
def test_bad_flags_and_values_one_line_non_zero(
    argv, code, fragment, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    assert rc == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    if fragment:
        assert fragment in err


def test_bad_values_in_a_run_that_needs_data(cli_run, capsys, tmp_path):
    data, images, out = cli_run
    cases = [
        (["--loss", "hinge"], 2, "argument --loss: invalid value 'hinge': Input should be 'bce'"),
        (["--feature-cache", "--augment-images"], 2, "feature_cache needs augment_images: false"),
        (["--init-from", str(tmp_path / "none.ckpt")], 1, "checkpoint not found"),
        (["--images", str(tmp_path / "none")], 1, "image directory not found"),
        (["--loss", "focal", "--loss-params", '{"gama": 2}'], 2, "has no parameter 'gama'"),
    ]
    for extra, code, fragment in cases:
        target = tmp_path / f"run{len(fragment)}"
        try:
            status = main(["train", *config_flags(data, images, target, *extra)])
        except SystemExit as exc:
            status = exc.code
        assert status == code, (extra, status)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)
    before = (out / "latest.ckpt").read_bytes()
    assert main(["train", *config_flags(data, images, out)]) == 1
    assert "already holds files" in capsys.readouterr().err
    assert (out / "latest.ckpt").read_bytes() == before


@pytest.mark.slow
def test_quickstart_runs_end_to_end_and_reruns(tmp_path, capsys):
    workdir = tmp_path / "qs"
    argv = [
        "quickstart",
        "--workdir",
        str(workdir),
        "--items",
        "24",
        "--epochs",
        "1",
        "--pretrain-epochs",
        "1",
        "--no-serve",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for fragment in (
        "1/5 synthetic",
        "2/5 prepare",
        "3/5 outlier-detection pre-training",
        "4/5 supervised training",
        "5/5 evaluation",
        "outlier rate (K=2)",
        "checkpoint:",
        "predict with it:",
        "magneto predict --checkpoint",
    ):
        assert fragment in text, fragment
    assert (workdir / "runs" / "train" / "best_f1.ckpt").is_file()
    assert main(argv) == 0  # re-running replaces its own work directory
    capsys.readouterr()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main(["quickstart", "--workdir", str(other), "--no-serve"]) == 1
    assert "was not made by quickstart" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_quickstart_ends_by_serving_the_model(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    from tests.service.conftest import free_port

    repo = Path(__file__).resolve().parents[2]
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "magneto.cli.main",
            "quickstart",
            "--workdir",
            str(tmp_path / "q"),
            "--items",
            "24",
            "--epochs",
            "1",
            "--pretrain-epochs",
            "1",
            "--port",
            str(port),
        ],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_until_ready(url, timeout=240, alive=lambda: proc.poll() is None, interval=0.5)
        assert proc.poll() is None, "quickstart exited instead of serving"
        assert ready, "quickstart did not become ready"
        record = read_annotations(tmp_path / "q" / "prepared" / "train.csv")[6]
        image = (tmp_path / "q" / "raw" / "Flickr" / record.image_path).read_bytes()
        response = httpx.post(
            url + "/v1/summarize",
            files={"image": ("a.jpg", image)},
            data={"tags": ",".join(record.tags)},
            timeout=60,
        )
        assert response.status_code == 200
        assert [t["tag"] for t in response.json()["tags"]] == list(record.tags)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert f"serving {tmp_path / 'q'}" in out and "/runs/train/best_f1.ckpt" in out
