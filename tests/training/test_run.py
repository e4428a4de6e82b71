"""Supervised training on tiny synthetic data, on the CPU."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import magneto.devices as devices
from magneto.cli.main import main
from magneto.config import ConfigError, RunConfig, load_config
from magneto.data.annotation_files import read_annotations
from magneto.errors import ImageError
from magneto.infer.checkpoint import load_checkpoint
from magneto.infer.predictor import Predictor, PredictRequest
from magneto.train.metrics import set_metrics
from magneto.training import run_training
from tests.conftest import config_flags, tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    data, images = tiny_data
    out = tmp_path_factory.mktemp("run") / "train"
    result = run_training(tiny_config(data, images, out, epochs=4))
    return result, data, images


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_every_output(trained):
    result, _, _ = trained
    out = result.out
    history = result.fit.history
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in (
        "best_f1.ckpt",
        "best_loss.ckpt",
        "latest.ckpt",
        "metrics.jsonl",
        "curves.png",
        "config.yaml",
        "final.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]  # as users count them
    for key in (
        "train_loss",
        "train_loss_final",
        "train_loss_image",
        "train_loss_tag",
        "val_loss",
        "val_f1",
        "val_precision",
        "val_recall",
        "val_micro_f1",
        "train_alpha",
        "val_alpha",
        "threshold",
        "lr",
    ):
        assert key in lines[0], key
    saved = load_config(RunConfig, out / "config.yaml")
    assert saved.epochs == 4 and saved.model.vocab_size == 81
    latest, best = load_checkpoint(out / "latest.ckpt"), load_checkpoint(out / "best_f1.ckpt")
    assert latest.training_state is not None and best.training_state is None
    assert best.metrics["val_f1"] == max(r["val_f1"] for r in lines)
    assert best.threshold == best.metrics["threshold"]
    assert best.stage == "train" and best.input_size == 64
    assert best.metrics["epoch"] == max(lines, key=lambda r: r["val_f1"])["epoch"]
    assert latest.metrics["epoch"] == latest.training_state["epoch"] == 4


def test_the_predictor_reproduces_the_trainers_validation(trained):
    _, data, images = trained
    ckpt = load_checkpoint(trained[0].out / "best_f1.ckpt")
    # The trainer scored validation with its trunk in bf16 where the CPU has native bf16.
    runtime = "bf16" if devices.cpu_has_native_bf16() else "float32"
    predictor = Predictor.from_checkpoint(
        trained[0].out / "best_f1.ckpt", device="cpu", runtime=runtime
    )
    requests, truth = [], []
    for record in read_annotations(data / "val.csv"):
        raw = (images / record.image_path).read_bytes()
        try:
            predictor.prepare(PredictRequest(raw, record.tags))
        except ImageError:
            continue  # the trainer skipped these too (truncated JPEGs planted by synth)
        requests.append(PredictRequest(raw, record.tags))
        truth.append(record.labels)
    predictions = predictor.predict_batch(requests)
    width = max(len(t) for t in truth)
    kept = torch.zeros(len(truth), width, dtype=torch.bool)
    targets = torch.zeros(len(truth), width)
    padding = torch.ones(len(truth), width, dtype=torch.bool)
    for i, (p, t) in enumerate(zip(predictions, truth, strict=True)):
        kept[i, : len(t)] = torch.tensor([s.kept for s in p.tags])
        targets[i, : len(t)] = torch.tensor(t, dtype=torch.float)
        padding[i, : len(t)] = False
    metrics = set_metrics(kept, targets, padding)
    assert metrics.items == ckpt.metrics["val_items"]
    assert metrics.f1 == pytest.approx(ckpt.metrics["val_f1"], abs=1e-9)
    assert metrics.micro_f1 == pytest.approx(ckpt.metrics["val_micro_f1"], abs=1e-9)
    # One at a time gives the same scores as the batch.
    single = predictor.predict(requests[0].image, requests[0].tags)
    assert [t.score for t in single.tags] == pytest.approx(
        [t.score for t in predictions[0].tags], abs=1e-5
    )


def test_an_existing_run_is_never_overwritten(trained):
    result, data, images = trained
    before = (result.out / "latest.ckpt").read_bytes()
    with pytest.raises(ConfigError, match="already holds files; pass --resume"):
        run_training(tiny_config(data, images, result.out))
    assert (result.out / "latest.ckpt").read_bytes() == before
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_training(tiny_config(data, images, result.out.parent / "fresh"), resume=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "magneto.cli.main", *args]


@pytest.mark.slow
def test_a_run_killed_after_an_epoch_resumes_to_the_same_state(tiny_data, tmp_path):
    """SIGKILL mid-run, --resume, and compare with an uninterrupted run: bit for bit.

    Image augmentation, TAD and two DataLoader workers are on, so every source of
    randomness has to be restored exactly.
    """
    data, images = tiny_data
    extra = (
        "--epochs",
        "3",
        "--augment-images",
        "--tad-add",
        "0.5",
        "--tad-drop",
        "0.5",
        "--workers",
        "2",
        "--seed",
        "7",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(
        _cli("train", *config_flags(data, images, whole, *extra)),
        check=True,
        env=env,
        capture_output=True,
        cwd=REPO,
    )
    proc = subprocess.Popen(
        _cli("train", *config_flags(data, images, broken, *extra)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        metrics = broken / "metrics.jsonl"
        if metrics.is_file() and metrics.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(broken / "latest.ckpt").training_state["epoch"]  # epochs done
    assert 1 <= killed_at < 3
    subprocess.run(
        _cli("train", "--resume", "--out", str(broken), "--no-progress"),
        check=True,
        env=env,
        capture_output=True,
        cwd=REPO,
    )
    a, b = load_checkpoint(whole / "latest.ckpt"), load_checkpoint(broken / "latest.ckpt")
    assert a.training_state["epoch"] == b.training_state["epoch"] == 3
    for name, tensor in a.model_state.items():
        assert torch.equal(tensor, b.model_state[name]), name
    keys = ("train_loss", "val_loss", "val_f1", "threshold", "lr")
    history = [json.loads(x) for x in (broken / "metrics.jsonl").read_text().splitlines()]
    assert [{k: r[k] for k in keys} for r in a.training_state["history"]] == [
        {k: r[k] for k in keys} for r in history
    ]


def _copy_run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained[0].out, tmp_path / "runs" / "train"))


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_resuming_a_finished_run_says_there_is_nothing_to_do(trained, tmp_path, capsys, caplog):
    run = _copy_run(trained, tmp_path)
    before = _files(run)
    with caplog.at_level(logging.INFO):
        code = main(["train", "--resume", "--out", str(run), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0
    said = [r.getMessage() for r in caplog.records] + (out + err).splitlines()
    assert said == [f"nothing to do: {run} has already finished 4 of 4 epochs"]
    assert _files(run) == before  # not even config.yaml or final.json rewritten


@pytest.mark.slow
def test_a_resumed_run_says_where_it_continues_and_counts_epochs_from_1(trained, tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _copy_run(trained, tmp_path)
    with caplog.at_level(logging.INFO):
        code = main(["train", "--resume", "--out", str(run), "--epochs", "5", "--no-progress"])
    assert code == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "resuming from epoch 5 of 5 (latest.ckpt)" in messages
    assert any(m.startswith("train epoch 5/5: ") for m in messages)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5]
    latest = load_checkpoint(run / "latest.ckpt")
    assert latest.training_state["epoch"] == latest.metrics["epoch"] == 5
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/train_loss")] == [1, 2, 3, 4, 5]


def test_curves_count_epochs_from_1_under_a_title_naming_stage_run_and_metrics(
    tmp_path, monkeypatch
):
    from matplotlib.figure import Figure

    from magneto.train.run_log import RunLog

    drawn: list[Figure] = []
    savefig = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), savefig(fig, *a, **k))
    )
    log = RunLog(tmp_path / "runs" / "train", "train")
    log.start(tiny_config("data", "images", tmp_path / "runs" / "train", epochs=3), [])
    history = []
    for epoch in (1, 2):
        record = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.1, "val_f1": 0.5}
        history.append(record)
        log.epoch(record, history)
    log.finish({})
    fig = drawn[-1]
    assert fig._suptitle.get_text() == (
        "supervised training, run runs/train: loss, validation F1 per epoch (epoch 2 of 3)"
    )
    assert list(fig.axes[0].lines[0].get_xdata()) == [1, 2]


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(tiny_data, tmp_path):
    data, images = tiny_data
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "magneto.cli.main",
        "train",
        *config_flags(data, images, out, "--epochs", "2", "--device", "cpu"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = json.loads((out / "final.json").read_text())
    assert final["world_size"] == 2
    assert final["replicas_identical"] is True
    assert len(set(final["replica_checksums"])) == 1 and len(final["replica_checksums"]) == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # written by rank 0 only
    metrics = json.loads(lines[-1])
    ckpt = load_checkpoint(out / "latest.ckpt")
    assert metrics["val_items"] == ckpt.metrics["val_items"] > 0


@pytest.mark.slow
def test_the_feature_cache_gives_the_same_losses(tiny_data, tmp_path):
    """In float32 (``amp off``): a bf16 trunk's output depends a little on the batch size."""
    data, images = tiny_data
    cache = tmp_path / "cache"
    plain = run_training(tiny_config(data, images, tmp_path / "plain", amp="off"))
    cached = run_training(
        tiny_config(
            data,
            images,
            tmp_path / "cached",
            feature_cache=True,
            feature_cache_dir=str(cache),
            amp="off",
        )
    )
    for a, b in zip(plain.fit.history, cached.fit.history, strict=True):
        for key in ("train_loss", "val_loss", "val_f1"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == 2  # train.csv and val.csv images
    stamps = [p.stat().st_mtime_ns for p in entries]
    run_training(
        tiny_config(
            data,
            images,
            tmp_path / "again",
            feature_cache=True,
            feature_cache_dir=str(cache),
            amp="off",
        )
    )
    assert [p.stat().st_mtime_ns for p in sorted(cache.rglob("*.npy"))] == stamps  # reused
    run_training(
        tiny_config(
            data,
            images,
            tmp_path / "bigger",
            feature_cache=True,
            feature_cache_dir=str(cache),
            input_size=96,
            amp="off",
        )
    )
    assert len(list(cache.iterdir())) == 2  # a new backbone/size key, the old one kept


@pytest.mark.parametrize("arch", ["ff", "tf-t", "tf-it"])
@pytest.mark.slow
def test_baselines_train(tiny_data, tmp_path, arch):
    data, images = tiny_data
    config = tiny_config(data, images, tmp_path / arch, epochs=1)
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"architecture": arch})}
    )
    result = run_training(config)
    assert load_checkpoint(result.out / "best_f1.ckpt").model_config.architecture == arch
    assert "val_alpha" not in result.fit.history[0]


def test_a_run_starts_from_imagenet_unless_asked_and_says_so_in_its_start_summary(
    tiny_data, tmp_path, caplog
):
    """Without a config, the image trunk is ImageNet's (offline: one line on how to pass the
    file); a frozen random trunk is used only when asked for, and then warned about."""
    from magneto.config import RunConfig
    from magneto.model.config import ModelConfig

    assert RunConfig().model.backbone_weights == "imagenet"
    assert RunConfig(model={"d_model": 64}).model.backbone_weights == "imagenet"
    assert RunConfig(model=ModelConfig(backbone_weights="none")).model.backbone_weights is None
    data, images = tiny_data
    caplog.set_level(logging.INFO)
    config = tiny_config(data, images, tmp_path / "run", epochs=2)
    run_training(config)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("items skipped for unusable images" in m for m in messages) == 1  # not per epoch
    summary = next(m for m in messages if m.startswith("train: "))
    assert "epochs; device cpu" in summary and "image trunk: resnet18, random" in summary
    assert "feature cache off" in summary
    assert any("the image trunk is random and frozen" in r.getMessage() for r in caplog.records)


def test_without_imagenet_weights_at_hand_the_run_says_how_in_one_line(
    tiny_data, tmp_path, capsys, monkeypatch
):
    """No config and no internet: one line naming the file to fetch and both flags."""
    import urllib.error

    import torch.hub

    from magneto.cli.main import main

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    data, images = tiny_data
    flags = [f for f in config_flags(data, images, tmp_path / "run") if f != "--backbone-weights"]
    flags.remove("none")
    assert main(["train", *flags, "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--backbone-weights /path/to/resnet18-f37072fd.pth" in err
    assert "--backbone-weights none" in err
    assert not (tmp_path / "run").exists()


def test_pretrain_epochs_from_the_command_line_win_over_the_config_file(
    tiny_data, tmp_path, capsys
):
    from magneto.cli.main import main

    data, images = tiny_data
    config = tmp_path / "c.yaml"
    config.write_text("pretrain_epochs: 5\nepochs: 5\n")
    out = tmp_path / "pre"
    argv = ["pretrain", "--config", str(config), *config_flags(data, images, out), "--epochs", "1"]
    assert main(argv) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # one epoch, as asked
    missing = ["pretrain", *config_flags(data, images, tmp_path / "p2")]
    (tmp_path / "only").mkdir()
    for name in ("train.csv", "val.csv", "vocab.csv"):
        (tmp_path / "only" / name).write_bytes((data / name).read_bytes())
    missing[missing.index(str(data))] = str(tmp_path / "only")
    assert main(missing) == 1
    assert "pass --pretrain-sources train" in capsys.readouterr().err


def test_tag_bias_starts_at_each_tags_counted_rate_and_pretraining_has_none(
    tiny_data, tmp_path, capsys
):
    """``--tag-bias``: each tag's logit starts at the log-odds of (k + 2 r) / (n + 2), counted
    here by hand from train.csv; pre-training (no importance labels) builds no bias, and its
    command line refuses the flag in one line."""
    data, images = tiny_data
    out = tmp_path / "ff"
    flags = config_flags(data, images, out, "--model", "ff", "--tag-bias", "--epochs", "1")
    assert main(["train", *flags, "--lr", "1e-9"]) == 0  # a step this small keeps the start
    ckpt = load_checkpoint(out / "latest.ckpt")
    assert ckpt.model_config.tag_bias
    counts: dict[str, list[int]] = {}
    for record in read_annotations(data / "train.csv"):
        for tag, label in zip(record.tags, record.labels or [], strict=True):
            counts.setdefault(tag, [0, 0])[0] += 1
            counts[tag][1] += int(label)
    rate = sum(k for _, k in counts.values()) / sum(n for n, _ in counts.values())
    logits = ckpt.model_state["tag_bias.logit.weight"][:, 0]
    words = ckpt.vocabulary.words
    for index, word in enumerate(words):
        n, k = counts.get(word, (0, 0))
        p = (k + 2 * rate) / (n + 2)
        assert abs(float(logits[index]) - math.log(p / (1 - p))) < 1e-4, word
    assert float(logits[len(words)]) == 0.0  # the padding row
    assert len({round(float(x), 3) for x in logits[: len(words)]}) > 3  # not one constant

    config = tmp_path / "c.yaml"
    config.write_text("model:\n  tag_bias: true\n")
    pre = tmp_path / "pre"
    argv = ["pretrain", "--config", str(config), *config_flags(data, images, pre)]
    assert main([*argv, "--epochs", "1"]) == 0
    pretrained = load_checkpoint(pre / "latest.ckpt")
    assert not pretrained.model_config.tag_bias
    assert not any(name.startswith("tag_bias.") for name in pretrained.model_state)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", *config_flags(data, images, tmp_path / "pre2"), "--tag-bias"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--tag-bias" in err[-1] and "train" in err[-1]
