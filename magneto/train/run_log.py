"""Everything a run writes besides checkpoints: config, metrics, TensorBoard, curves, summary.

Only rank 0 writes (``enabled=False`` elsewhere), so the Trainer can call it unconditionally.
``metrics.jsonl`` is the epoch history; on resume it is rewritten from the checkpoint's
history, which is the truth (a killed run may have logged an epoch it never checkpointed).
Epochs are 1-based everywhere: a record's ``epoch`` is also its TensorBoard step and its
x position on ``curves.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from magneto.config import save_config
from magneto.train.curves import plot_curves
from magneto.train.tracking import Tracker

STAGE_TITLES = {"train": "supervised training", "pretrain": "pre-training"}


class RunLog:
    def __init__(
        self, out: Path, stage: str, *, enabled: bool = True, tracker: Tracker | None = None
    ) -> None:
        self.out = Path(out)
        self.stage = stage
        self.enabled = enabled
        self.epochs: int | None = None
        self._writer: Any = None
        self.tracker = tracker if tracker is not None and enabled else Tracker()

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    def start(self, config: BaseModel, history: list[dict[str, Any]]) -> None:
        """Save the resolved config; a resumed run's ``metrics.jsonl`` becomes its history."""
        self.epochs = getattr(config, "epochs", None)
        if not self.enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(config, self.out / "config.yaml")
        self.tracker.start(config, self.out, self.stage, resumed=bool(history))
        if history:
            tmp = self.metrics_path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
            os.replace(tmp, self.metrics_path)

    def epoch(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Append one epoch's record and redraw the curves."""
        if not self.enabled:
            return
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        step = record["epoch"]
        writer = self._tensorboard(step)
        for key, value in record.items():
            if isinstance(value, int | float) and key != "epoch" and value is not None:
                group = "loss" if "loss" in key else "gate" if "alpha" in key else "metrics"
                writer.add_scalar(f"{group}/{key}", value, step)
        writer.flush()
        plot_curves(history, self.out / "curves.png", title=self.title(history))
        self.tracker.epoch(record)

    def title(self, history: list[dict[str, Any]]) -> str:
        """What the curves show: the stage, the run directory, the metrics, how far it got."""
        stage = STAGE_TITLES.get(self.stage, self.stage)
        run = "/".join(p for p in (self.out.parent.name, self.out.name) if p)
        shown = "loss, validation F1" + (
            " and gate alpha" if any("val_alpha" in r for r in history) else ""
        )
        last = history[-1]["epoch"] if history else 0
        of = f" of {self.epochs}" if self.epochs else ""
        return f"{stage}, run {run}: {shown} per epoch (epoch {last}{of})"

    def _tensorboard(self, first_step: int) -> Any:
        """The writer, purging any events a killed run logged from ``first_step`` on."""
        if self._writer is None:  # imported late: TensorBoard is slow to import
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=first_step)
        return self._writer

    def finish(self, summary: dict[str, Any], best: Path | None = None) -> None:
        """Close TensorBoard, write ``final.json``; the tracker gets the files and ``best``."""
        if not self.enabled:
            return
        if self._writer is not None:
            self._writer.close()
        (self.out / "final.json").write_text(json.dumps(summary, indent=2) + "\n")
        files = ("curves.png", "config.yaml", "metrics.jsonl", "final.json")
        self.tracker.finish([*(self.out / name for name in files), *([best] if best else [])])

    def fail(self, interrupted: bool) -> None:
        """The run stopped on an error (or Ctrl-C): say so to the tracker."""
        if self.enabled:
            self.tracker.fail(interrupted)
