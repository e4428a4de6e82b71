"""``--tracking mlflow``: both stages log to a real MLflow store (a local file store here)."""

from __future__ import annotations

import json

import pytest

from magneto.infer.predictor import Predictor
from magneto.pretraining import run_pretraining
from magneto.training import run_training
from tests.conftest import tiny_config

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="mlflow is in the [dev] extra")
pytestmark = pytest.mark.slow  # two short training runs


def test_both_stages_log_params_metrics_and_the_best_checkpoint_to_mlflow(
    tiny_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks to opt in to files
    uri = (tmp_path / "mlruns").as_uri()
    data, images = tiny_data
    tracked = dict(tracking="mlflow", tracking_uri=uri, experiment="tiny")
    pre = run_pretraining(tiny_config(data, images, tmp_path / "pre", **tracked))
    train = tiny_config(data, images, tmp_path / "run", epochs=2, init_from=str(pre.checkpoint))
    run_training(train.model_copy(update=tracked))

    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = {r.data.tags["magneto.stage"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"train", "pretrain"}
    run = runs["train"]
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.05" and run.data.params["model.d_model"] == "32"
    logged = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    history = client.get_metric_history(run.info.run_id, "val_f1")
    assert [(m.step, m.value) for m in history] == [(r["epoch"], r["val_f1"]) for r in logged]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "config.yaml", "metrics.jsonl", "final.json", "checkpoints"} <= names
    ckpt = client.download_artifacts(run.info.run_id, "checkpoints/best_f1.ckpt", str(tmp_path))
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    assert predictor.vocabulary.words[:3]
    pre_files = {a.path for a in client.list_artifacts(runs["pretrain"].info.run_id, "checkpoints")}
    assert pre_files == {"checkpoints/pretrain.ckpt"}


def test_a_resumed_run_goes_on_in_the_same_mlflow_run(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    data, images = tiny_data
    config = tiny_config(
        data, images, tmp_path / "run", epochs=1, tracking="mlflow", tracking_uri=uri
    )
    run_training(config)
    run_training(config.model_copy(update={"epochs": 2}), resume=True)
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("magneto").experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_f1")]
    assert steps == [1, 2] and run.info.status == "FINISHED"
