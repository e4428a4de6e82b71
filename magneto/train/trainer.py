"""The epoch sequence of a run: train, validate, choose checkpoints, resume exactly.

The :class:`Trainer` holds the run's state (epoch, history, best figures) and decides which
checkpoints to write; the loops live in :mod:`magneto.train.loop`, what it optimises with in
:mod:`magneto.train.fit_setup`, and what it logs in :mod:`magneto.train.run_log`. ``latest``
checkpoints carry the optimizer, scheduler, history and every RNG, so a killed run resumes bit for
bit. Metrics are reduced across ranks; only rank 0 writes.

Epochs are numbered from 1 wherever a user reads them (records, ``metrics.jsonl``, logs,
checkpoints: ``training_state["epoch"]`` is the number of epochs done); the loop index that
seeds augmentation and samplers stays 0-based, so resuming reproduces an unbroken run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magneto.config import RunConfig
from magneto.data.vocabulary import Vocabulary
from magneto.devices import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    capture_rng_state,
    parameter_checksum,
    restore_rng_state,
    training_amp,
)
from magneto.infer.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from magneto.train.fit_setup import FitParts
from magneto.train.loop import ScoredItem, labelled, score, train_one_epoch
from magneto.train.metrics import choose_threshold, metrics_at
from magneto.train.run_log import RunLog
from magneto.train.stopping import epochs_since_best, should_stop
from magneto.train.tracking import open_tracker

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINTS = {
    "best_f1": "best_f1.ckpt",
    "best_loss": "best_loss.ckpt",
    "latest": "latest.ckpt",
}


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_f1: float
    best_loss: float
    checkpoints: dict[str, Path]
    replica_checksums: list[str] = field(default_factory=list)
    nothing_to_do: bool = False  # a resumed run had already done all its epochs


class Trainer:
    """Runs ``config.epochs`` epochs of ``parts`` and keeps the best and latest checkpoints.

    ``threshold``: a fixed decision threshold, or None to choose it on validation each epoch.
    ``checkpoint_names``: which of best_f1 / best_loss / latest to write, and their file names.
    """

    def __init__(
        self,
        config: RunConfig,
        parts: FitParts,
        vocabulary: Vocabulary,
        *,
        out: Path,
        stage: str,
        device: torch.device,
        dist_info: DistInfo | None = None,
        threshold: float | None = None,
        checkpoint_names: dict[str, str] | None = None,
        resume_state: Checkpoint | None = None,
    ) -> None:
        self.config = config
        self._reported_skips: set[str] = set()  # items whose unusable image was logged
        self.parts = parts
        self.vocabulary = vocabulary
        self.stage = stage
        self.device = device
        self.dist = dist_info or DistInfo()
        self.threshold = threshold
        names = checkpoint_names or DEFAULT_CHECKPOINTS
        self.paths = {k: Path(out) / v for k, v in names.items()}
        tracker = (
            open_tracker(config.tracking, config.tracking_uri, config.experiment)
            if self.dist.is_main
            else None
        )
        self.log = RunLog(Path(out), stage, enabled=self.dist.is_main, tracker=tracker)
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_f1 = -math.inf
        self.best_loss = math.inf
        if resume_state is not None:
            self._restore(resume_state)

    # -- state ---------------------------------------------------------------------------------
    def _restore(self, checkpoint: Checkpoint) -> None:
        state = checkpoint.training_state
        if state is None:
            raise CheckpointError("this checkpoint holds no training state to resume from")
        self.parts.model.load_state_dict(checkpoint.model_state)
        self.parts.optimizer.load_state_dict(state["optimizer"])
        if self.parts.scheduler is not None and state.get("scheduler") is not None:
            self.parts.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = int(state["epoch"])  # epochs done = the next 0-based loop index
        self.history = list(state["history"])
        self.best_f1 = float(state["best_f1"])
        self.best_loss = float(state["best_loss"])
        restore_rng_state(state["rng"])

    def _checkpoint(
        self, record: dict[str, Any], threshold: float, *, resumable: bool
    ) -> Checkpoint:
        model, scheduler = self.parts.model, self.parts.scheduler
        training_state = None
        if resumable:
            training_state = {
                "epoch": record["epoch"],  # 1-based: also the number of epochs done
                "optimizer": self.parts.optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": self.history,
                "best_f1": self.best_f1,
                "best_loss": self.best_loss,
                "rng": capture_rng_state(),
            }
        return Checkpoint(
            model_config=model.config,
            vocabulary=self.vocabulary,
            model_state={k: v.detach().cpu() for k, v in model.state_dict().items()},
            input_size=self.config.input_size,
            threshold=threshold,
            stage=self.stage,
            metrics=record,
            config=self.config.model_dump(mode="json"),
            training_state=training_state,
        )

    # -- one epoch -----------------------------------------------------------------------------
    def _reduce(self, sums: dict[str, float]) -> dict[str, float]:
        """Summed losses and gate values over every rank -> per-item means."""
        keys = sorted(sums)
        totals = all_reduce_sum(
            torch.tensor([sums[k] for k in keys], dtype=torch.float64), self.dist
        )
        total = dict(zip(keys, totals.tolist(), strict=True))
        items = max(total.pop("items", 0.0), 1.0)
        out = {k: v / items for k, v in total.items() if k.startswith("loss")}
        if total.get("alpha_count"):
            out["alpha"] = total["alpha_sum"] / total["alpha_count"]
        return out

    def _sync_buffers(self) -> None:
        """DDP copies rank 0's buffers before each forward, so after the last step BatchNorm
        statistics still differ per rank; make rank 0's authoritative before validating."""
        if self.dist.enabled:
            for buffer in self.parts.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def _gather(self, items: list[ScoredItem]) -> list[ScoredItem]:
        """Every rank's validation items, each once (DistributedSampler pads with repeats)."""
        unique: dict[str, ScoredItem] = {}
        for part in all_gather_objects(items, self.dist):
            for item in part:
                unique.setdefault(item.item_id, item)
        return sorted(unique.values(), key=lambda item: item.item_id)

    def _metrics(self, items: list[ScoredItem]) -> tuple[float, dict[str, Any]]:
        scores = [item.scores for item in items]
        targets = labelled(items)
        threshold = self.threshold
        if threshold is None:
            threshold = choose_threshold(scores, targets)[0]
        metrics = metrics_at(threshold, scores, targets).as_dict()
        metrics.pop("outlier_rate")
        at_half = metrics["f1"] if threshold == 0.5 else metrics_at(0.5, scores, targets).f1
        return threshold, {**metrics, "f1_at_0.5": at_half}

    def _epoch(self, epoch: int) -> tuple[dict[str, Any], float]:
        """Train and validate once (``epoch`` is the 0-based loop index); returns the epoch's
        record, numbered from 1, and its threshold."""
        started = time.perf_counter()
        parts, config = self.parts, self.config
        parts.set_epoch(epoch)
        train_sums, skipped = train_one_epoch(
            parts.net,
            parts.train_loader,
            parts.criterion,
            parts.optimizer,
            device=self.device,
            amp=training_amp(config.amp, self.device),
            grad_clip=config.grad_clip,
            description=f"{self.stage} epoch {epoch + 1}/{config.epochs}",
            progress=config.progress and self.dist.is_main,
        )
        self._sync_buffers()
        scored = score(
            parts.model,
            parts.val_loader,
            device=self.device,
            amp=config.amp,
            criterion=parts.criterion,
        )
        train_stats, val_stats = self._reduce(train_sums), self._reduce(scored.sums)
        threshold, metrics = self._metrics(self._gather(scored.items))
        if isinstance(parts.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            parts.scheduler.step(val_stats["loss"])
        elif parts.scheduler is not None:
            parts.scheduler.step()
        skipped_ids = sorted(
            {i for part in all_gather_objects(skipped, self.dist) for i, _ in part}
        )
        new = sorted(set(skipped_ids) - self._reported_skips)
        if new and self.dist.is_main:  # said once per item, not again every epoch
            log.warning(
                "epoch %d: %d %sitems skipped for unusable images: %s",
                epoch + 1,
                len(new),
                "more " if self._reported_skips else "",
                ", ".join(new[:10]) + (", ..." if len(new) > 10 else ""),
            )
        self._reported_skips.update(new)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            **{f"train_{k}": v for k, v in train_stats.items()},
            **{f"val_{k}": v for k, v in val_stats.items()},
            **{f"val_{k}": v for k, v in metrics.items()},
            "threshold": threshold,
            "lr": parts.optimizer.param_groups[0]["lr"],
            "skipped_items": len(skipped_ids),
            "seconds": time.perf_counter() - started,
        }
        return record, threshold

    # -- the run -------------------------------------------------------------------------------
    def _save(self, record: dict[str, Any], threshold: float, improved: set[str]) -> None:
        """best_f1 / best_loss when they improved (never resumable), latest always."""
        if not self.dist.is_main:
            return
        for name in ("best_f1", "best_loss"):
            if name in improved and name in self.paths:
                save_checkpoint(
                    self._checkpoint(record, threshold, resumable=False), self.paths[name]
                )
        save_checkpoint(self._checkpoint(record, threshold, resumable=True), self.paths["latest"])

    def _report(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        log.info(
            "%s epoch %d/%d: train loss %.4f, val loss %.4f, val F1 %.4f (P %.4f R %.4f) "
            "at threshold %.2f%s (%.1fs)",
            self.stage,
            record["epoch"],
            self.config.epochs,
            record["train_loss"],
            record["val_loss"],
            record["val_f1"],
            record["val_precision"],
            record["val_recall"],
            record["threshold"],
            f", alpha {record['val_alpha']:.3f}" if "val_alpha" in record else "",
            record["seconds"],
        )

    def fit(self) -> FitResult:
        try:
            return self._fit()
        except BaseException as exc:
            self.log.fail(interrupted=isinstance(exc, KeyboardInterrupt))
            raise

    def _fit(self) -> FitResult:
        self.log.start(self.config, self.history if self.start_epoch else [])
        patience = self.config.early_stopping
        stopped = False
        for epoch in range(self.start_epoch, self.config.epochs):
            if should_stop(self.history, patience, self.stage, self.dist.is_main):
                stopped = True
                break
            record, threshold = self._epoch(epoch)
            self.history.append(record)
            improved = set()
            if record["val_f1"] > self.best_f1:
                improved.add("best_f1")
            if record["val_loss"] < self.best_loss:
                improved.add("best_loss")
            self.best_f1 = max(self.best_f1, record["val_f1"])
            self.best_loss = min(self.best_loss, record["val_loss"])
            self._save(record, threshold, improved)
            self.log.epoch(record, self.history)
            self._report(record)
        checksums = all_gather_objects(parameter_checksum(self.parts.model), self.dist)
        self.log.finish(
            {
                "epochs": len(self.history),
                "stopped_early": stopped,
                "early_stopping_patience": patience,
                "best_epoch": len(self.history) - epochs_since_best(self.history),
                "best_f1": self.best_f1,
                "best_loss": self.best_loss,
                "world_size": self.dist.world_size,
                "replica_checksums": checksums,
                "replicas_identical": len(set(checksums)) == 1,
            },
            best=next(iter(self.paths.values()), None),
        )
        return FitResult(self.history, self.best_f1, self.best_loss, self.paths, checksums)
