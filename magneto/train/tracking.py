"""Experiment tracking: a run's config, metrics and files in MLflow (``--tracking mlflow``).

Beside what :class:`magneto.train.run_log.RunLog` writes into the run directory, a tracker sends
the resolved config as parameters, every epoch's figures as metrics (step = the 1-based
epoch), and at the end the curves, the config, ``metrics.jsonl``, ``final.json`` and the best
checkpoint as artifacts, so a team's MLflow shows runs and models next to each other. The run's
id is kept in ``RUN_DIR/mlflow_run.json``: ``--resume`` goes on in the same MLflow run. The
tracking server is ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default.
MLflow is an optional extra, imported only when asked for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from magneto.errors import ConfigError

RUN_FILE = "mlflow_run.json"
BATCH = 100  # MLflow takes at most 100 parameters per call


def _flat(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _flat(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), data


class Tracker:
    """No tracking: every call is a no-op (what a run has without ``--tracking``)."""

    def start(self, config: BaseModel, out: Path, stage: str, resumed: bool) -> None:
        """Open (or, resumed, reopen) the run and record the config."""

    def epoch(self, record: dict[str, Any]) -> None:
        """Record one epoch's figures."""

    def finish(self, files: Iterable[Path]) -> None:
        """Attach ``files`` and close the run as finished."""

    def fail(self, interrupted: bool) -> None:
        """Close the run as failed (or killed, when interrupted)."""


class MlflowTracker(Tracker):
    def __init__(self, uri: str | None, experiment: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError(
                "--tracking mlflow needs MLflow: pip install 'magneto-ets[mlflow]'"
            ) from None
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment = experiment
        self.run_id: str | None = None

    def start(self, config: BaseModel, out: Path, stage: str, resumed: bool) -> None:
        saved = out / RUN_FILE
        if resumed and saved.is_file():
            self.run_id = json.loads(saved.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = (
            found.experiment_id if found else self.client.create_experiment(self.experiment)
        )
        tags = {"magneto.stage": stage, "magneto.version": version("magneto-ets")}
        tags["run_dir"] = str(out.resolve())
        run = self.client.create_run(experiment_id, run_name=out.name, tags=tags)
        self.run_id = run.info.run_id
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"run_id": self.run_id, "experiment": self.experiment}))
        from mlflow.entities import Param

        params = [
            Param(key, json.dumps(value) if not isinstance(value, str) else value)
            for key, value in _flat(config.model_dump(mode="json"))
        ]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + BATCH])

    def epoch(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(record["epoch"])
        metrics = [
            Metric(key, float(value), now, step)
            for key, value in record.items()
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        ]
        self.client.log_batch(self._id(), metrics=metrics)

    def finish(self, files: Iterable[Path]) -> None:
        for path in files:
            if path.is_file():
                folder = "checkpoints" if path.suffix == ".ckpt" else None
                self.client.log_artifact(self._id(), str(path), artifact_path=folder)
        self.client.set_terminated(self._id(), status="FINISHED")

    def fail(self, interrupted: bool) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status="KILLED" if interrupted else "FAILED")

    def _id(self) -> str:
        assert self.run_id is not None, "start() opens the run"
        return self.run_id


def open_tracker(kind: str, uri: str | None, experiment: str) -> Tracker:
    """The tracker a config asks for (``none`` or ``mlflow``)."""
    return MlflowTracker(uri, experiment) if kind == "mlflow" else Tracker()
