"""Everything a run writes besides checkpoints: config, metrics, TensorBoard, curves, summary.

Only rank 0 writes (``enabled=False`` elsewhere), so the Trainer can call it unconditionally.
``metrics.jsonl`` is the epoch history; on resume it is rewritten from the checkpoint's
history, which is the truth (a killed run may have logged an epoch it never checkpointed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from magneto.config import save_config
from magneto.curves import plot_curves


class RunLog:
    def __init__(self, out: Path, stage: str, *, enabled: bool = True) -> None:
        self.out = Path(out)
        self.stage = stage
        self.enabled = enabled
        self._writer: Any = None

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    def start(self, config: BaseModel, history: list[dict[str, Any]]) -> None:
        """Save the resolved config; a resumed run's ``metrics.jsonl`` becomes its history."""
        if not self.enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(config, self.out / "config.yaml")
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
        writer = self._tensorboard(record["epoch"])
        step = record["epoch"] + 1
        for key, value in record.items():
            if isinstance(value, int | float) and key != "epoch" and value is not None:
                group = "loss" if "loss" in key else "gate" if "alpha" in key else "metrics"
                writer.add_scalar(f"{group}/{key}", value, step)
        writer.flush()
        plot_curves(history, self.out / "curves.png", title=f"{self.stage}: {self.out.name}")

    def _tensorboard(self, first_epoch: int) -> Any:
        if self._writer is None:  # imported late: TensorBoard is slow to import
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=first_epoch)
        return self._writer

    def finish(self, summary: dict[str, Any]) -> None:
        """Close TensorBoard and write ``final.json``."""
        if not self.enabled:
            return
        if self._writer is not None:
            self._writer.close()
        (self.out / "final.json").write_text(json.dumps(summary, indent=2) + "\n")
