"""The GPU code paths in miniature (marked ``cuda``: skipped, saying why, without a GPU), and
the GPU check script, which CI runs on the CPU at toy sizes so that it cannot rot."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from magneto.infer.predictor import Predictor

REPO = Path(__file__).resolve().parents[1]


def photos(tiny_data, count: int = 8) -> list[Path]:
    _, images = tiny_data
    return [p for p in sorted(images.rglob("*.jpg")) if p.stat().st_size > 2000][:count]


def items(checkpoint, tiny_data) -> list[tuple[Path, list[str]]]:
    from magneto.infer.checkpoint import load_checkpoint

    words = load_checkpoint(checkpoint).vocabulary.words
    return [(p, words[i % 5 : i % 5 + 4]) for i, p in enumerate(photos(tiny_data))]


@pytest.mark.cuda
def test_cuda_training_step_in_bf16_learns(tiny_data, tmp_path):
    from magneto.training import run_training
    from tests.conftest import tiny_config

    data, images = tiny_data
    config = tiny_config(data, images, tmp_path / "run", device="cuda", amp="bf16", epochs=2)
    history = run_training(config).fit.history
    assert all(math.isfinite(epoch["train_loss"]) for epoch in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.cuda
def test_cuda_answers_match_the_cpu(checkpoint, tiny_data):
    pairs = items(checkpoint, tiny_data)

    def scores(predictor: Predictor) -> np.ndarray:
        return np.array([[t.score for t in p.tags] for p in predictor.predict_batch(pairs)])

    cpu = scores(Predictor.from_checkpoint(checkpoint, device="cpu", runtime="float32"))
    exact = Predictor.from_checkpoint(checkpoint, device="cuda", runtime="float32")
    np.testing.assert_allclose(scores(exact), cpu, atol=1e-4)
    fast = Predictor.from_checkpoint(checkpoint, device="cuda", runtime="bf16")
    assert fast.amp == "bf16"  # on CUDA the whole model runs under autocast
    np.testing.assert_allclose(scores(fast), cpu, atol=0.03)
    auto = Predictor.from_checkpoint(checkpoint, device="cuda")
    assert auto.runtime.name in ("float32", "bf16")  # onnx and int8 are CPU runtimes
    assert {"onnx", "int8"} <= set(auto.runtime.skipped)


@pytest.mark.cuda
def test_cuda_bulk_job_scores_every_row(checkpoint, tiny_data, tmp_path):
    from magneto.bulk.job import BulkJob
    from magneto.bulk.local import run_local

    _, images = tiny_data
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "tags", "image"])
        for i, (path, tags) in enumerate(items(checkpoint, tiny_data)):
            writer.writerow([str(i), ",".join(tags), str(path.relative_to(images))])
    job = BulkJob(
        checkpoint=checkpoint,
        data=manifest,
        out=tmp_path / "out.jsonl",
        images=images,
        workers=2,
        device="cuda",
        progress=False,
    )
    report = run_local(job)
    rows = [json.loads(line) for line in job.out.read_text().splitlines()]
    assert report.summary.items == len(rows) == 8 and not report.summary.errors
    assert report.runtime in ("float32", "bf16")


@pytest.mark.cuda
def test_cuda_service_answers(checkpoint, tiny_data):
    from fastapi.testclient import TestClient

    from magneto.service.app import create_app
    from magneto.service.settings import ServiceSettings

    path, tags = items(checkpoint, tiny_data)[0]
    settings = ServiceSettings(checkpoint=checkpoint, device="cuda")
    with TestClient(create_app(settings)) as client:
        model = client.get("/v1/model").json()
        answer = client.post(
            "/v1/summarize",
            files={"image": ("a.jpg", path.read_bytes())},
            data={"tags": ",".join(tags)},
        )
    assert model["runtime"]["name"] in ("float32", "bf16")
    assert answer.status_code == 200 and len(answer.json()["tags"]) == len(tags)


def test_cuda_tests_are_collected_and_skipped_cleanly_here(pytestconfig):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the cuda tests run")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", __file__],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "4 skipped" in result.stdout and "passed" not in result.stdout


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("# GPU check (dry run on the CPU)\ncpu: ")
    for check in (
        "train step, nuswide",
        "train step, large-scale",
        "feature cache build",
        "magneto summarize",
        "decode floor",
        "service, 4 concurrent clients",
        "parity with the CPU",
    ):
        assert check in out, check
    assert "FAILED" not in out
