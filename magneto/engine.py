"""The epoch loop shared by supervised training and outlier-detection pre-training.

One :class:`Trainer` runs epochs of optimisation and validation and owns everything around
them: the optimizer and ReduceLROnPlateau, DistributedDataParallel, bf16 autocast on CUDA,
progress bars, TensorBoard scalars, ``metrics.jsonl``, the curves PNG, and atomic best/latest
checkpoints that let an interrupted run resume exactly (model, optimizer, scheduler, epoch and
every RNG). Only rank 0 logs and writes; metrics are reduced across ranks.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm import tqdm

from magneto.checkpoint import Checkpoint, save_checkpoint
from magneto.config import RunConfig, save_config
from magneto.dataset import Batch, Collator, worker_init
from magneto.losses import TotalLoss, build_loss
from magneto.metrics import SetMetricAccumulator, choose_threshold
from magneto.model.architectures import ModelOutput
from magneto.runtime import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    autocast,
    capture_rng_state,
    parameter_checksum,
    restore_rng_state,
)
from magneto.vocabulary import Vocabulary

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


def forward(model: nn.Module, batch: Batch) -> ModelOutput:
    return model(batch.images, batch.tags, batch.padding_mask, image_features=batch.features)


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            foreach=True,
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)


class Trainer:
    """Fits ``model`` on ``train`` and validates on ``val`` every epoch."""

    def __init__(
        self,
        config: RunConfig,
        model: nn.Module,
        vocabulary: Vocabulary,
        train: Dataset,
        val: Dataset,
        *,
        out: Path,
        stage: str,
        device: torch.device,
        dist_info: DistInfo | None = None,
        aux: bool = True,
        threshold: float | None = None,
        checkpoint_names: dict[str, str] | None = None,
        resume_state: Checkpoint | None = None,
    ) -> None:
        """``threshold``: a fixed decision threshold, or None to choose it on validation."""
        self.config = config
        self.vocabulary = vocabulary
        self.out = Path(out)
        self.stage = stage
        self.device = device
        self.dist = dist_info or DistInfo()
        self.threshold = threshold
        self.names = checkpoint_names or DEFAULT_CHECKPOINTS
        self.model = model.to(device)
        self.criterion = TotalLoss(build_loss(config.loss, **config.loss_params), aux=aux)
        self.optimizer = build_optimizer(config, self.model)
        self.scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="min",
                factor=config.plateau_factor,
                patience=config.plateau_patience,
            )
            if config.scheduler == "plateau"
            else None
        )
        self.ddp = (
            DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
            if self.dist.enabled
            else None
        )
        self.train_set, self.val_set = train, val
        collate = Collator(vocabulary.padding_index)
        self.sampler_generator = torch.Generator()
        if self.dist.enabled:
            self.train_sampler = DistributedSampler(
                train,
                num_replicas=self.dist.world_size,
                rank=self.dist.rank,
                shuffle=True,
                seed=config.seed,
            )
            val_sampler = DistributedSampler(
                val, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=False
            )
        else:
            self.train_sampler = RandomSampler(train, generator=self.sampler_generator)
            val_sampler = None
        loader_args: dict[str, Any] = dict(
            collate_fn=collate,
            num_workers=config.workers,
            pin_memory=device.type == "cuda",
            worker_init_fn=worker_init if config.workers else None,
            generator=torch.Generator().manual_seed(config.seed),
        )
        self.train_loader = DataLoader(
            train,
            batch_size=config.batch_size,
            sampler=self.train_sampler,
            drop_last=False,
            **loader_args,
        )
        self.val_loader = DataLoader(
            val, batch_size=config.eval_batch_size, sampler=val_sampler, **loader_args
        )
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_f1 = -math.inf
        self.best_loss = math.inf
        self.writer = None
        if resume_state is not None:
            self._restore(resume_state)

    # -- state ---------------------------------------------------------------------------------
    @property
    def net(self) -> nn.Module:
        return self.ddp if self.ddp is not None else self.model

    def _restore(self, checkpoint: Checkpoint) -> None:
        state = checkpoint.training_state
        if state is None:
            raise ValueError("this checkpoint holds no training state to resume from")
        self.model.load_state_dict(checkpoint.model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = int(state["epoch"]) + 1
        self.history = list(state["history"])
        self.best_f1 = float(state["best_f1"])
        self.best_loss = float(state["best_loss"])
        restore_rng_state(state["rng"])

    def _checkpoint(
        self, record: dict[str, Any], threshold: float, *, resumable: bool
    ) -> Checkpoint:
        training_state = None
        if resumable:
            training_state = {
                "epoch": record["epoch"],
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "history": self.history,
                "best_f1": self.best_f1,
                "best_loss": self.best_loss,
                "rng": capture_rng_state(),
            }
        return Checkpoint(
            model_config=self.model.config,  # type: ignore[attr-defined]
            vocabulary=self.vocabulary,
            model_state={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            input_size=self.config.input_size,
            threshold=threshold,
            stage=self.stage,
            metrics=record,
            config=self.config.model_dump(mode="json"),
            training_state=training_state,
        )

    # -- epochs --------------------------------------------------------------------------------
    def _set_epoch(self, epoch: int) -> None:
        """New draws for training; validation keeps epoch 0's, so epochs stay comparable."""
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        if isinstance(self.train_sampler, DistributedSampler):
            self.train_sampler.set_epoch(epoch)
        self.sampler_generator.manual_seed(self.config.seed * 100_003 + epoch)

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], list[tuple[str, str]]]:
        self.net.train()
        sums: dict[str, float] = defaultdict(float)
        skipped: list[tuple[str, str]] = []
        bar = tqdm(
            self.train_loader,
            desc=f"{self.stage} epoch {epoch + 1}/{self.config.epochs}",
            unit="batch",
            leave=False,
            disable=not (self.config.progress and self.dist.is_main),
        )
        for batch in bar:
            skipped.extend(batch.skipped)
            if not len(batch):
                continue
            batch = batch.to(self.device, non_blocking=True)
            with autocast(self.device, self.config.amp):
                output = forward(self.net, batch)
            loss, parts = self.criterion(output, batch.targets, batch.padding_mask)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            n = len(batch)
            sums["items"] += n
            sums["loss"] += loss.item() * n
            for name, value in parts.items():
                sums[f"loss_{name}"] += value.item() * n
            if output.alpha is not None:
                real = ~batch.padding_mask
                sums["alpha_sum"] += output.alpha.detach()[real].float().sum().item()
                sums["alpha_count"] += real.sum().item()
            if sums["items"]:
                bar.set_postfix(loss=f"{sums['loss'] / sums['items']:.4f}", refresh=False)
        self._sync_buffers()
        return self._reduce(sums), skipped

    def _sync_buffers(self) -> None:
        """DDP copies rank 0's buffers before each forward, so after the last step BatchNorm
        statistics still differ per rank; make rank 0's authoritative before validating."""
        if self.dist.enabled:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def _validate(self) -> tuple[dict[str, float], list[tuple[str, np.ndarray, np.ndarray]]]:
        self.net.eval()
        sums: dict[str, float] = defaultdict(float)
        scored: list[tuple[str, np.ndarray, np.ndarray]] = []
        with torch.no_grad():
            for batch in self.val_loader:
                if not len(batch):
                    continue
                batch = batch.to(self.device, non_blocking=True)
                with autocast(self.device, self.config.amp):
                    output = forward(self.model, batch)
                loss, parts = self.criterion(output, batch.targets, batch.padding_mask)
                n = len(batch)
                sums["items"] += n
                sums["loss"] += loss.item() * n
                for name, value in parts.items():
                    sums[f"loss_{name}"] += value.item() * n
                real = ~batch.padding_mask
                if output.alpha is not None:
                    sums["alpha_sum"] += output.alpha[real].float().sum().item()
                    sums["alpha_count"] += real.sum().item()
                final = output.final.float().cpu().numpy()
                targets = batch.targets.cpu().numpy()
                lengths = real.sum(1).cpu().tolist()
                for i, item_id in enumerate(batch.item_ids):
                    scored.append((item_id, final[i, : lengths[i]], targets[i, : lengths[i]]))
        gathered = all_gather_objects(scored, self.dist)
        unique: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
        for part in gathered:  # DistributedSampler pads with repeats: count every item once
            for entry in part:
                unique.setdefault(entry[0], entry)
        return self._reduce(sums), sorted(unique.values(), key=lambda e: e[0])

    def _reduce(self, sums: dict[str, float]) -> dict[str, float]:
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

    def _score(
        self, scored: list[tuple[str, np.ndarray, np.ndarray]]
    ) -> tuple[float, dict[str, Any]]:
        scores = [s for _, s, _ in scored]
        targets = [t for _, _, t in scored]

        def at(threshold: float) -> dict[str, Any]:
            acc = SetMetricAccumulator()
            for s, t in zip(scores, targets, strict=True):
                acc.update(torch.from_numpy(s >= threshold)[None], torch.from_numpy(t)[None])
            return acc.compute().as_dict()

        threshold = self.threshold
        if threshold is None:
            threshold = choose_threshold(scores, targets)[0]
        metrics = at(threshold)
        metrics.pop("outlier_rate")
        metrics["f1_at_0.5"] = metrics["f1"] if threshold == 0.5 else at(0.5)["f1"]
        return threshold, metrics

    # -- outputs -------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=record["epoch"])
        step = record["epoch"] + 1
        for key, value in record.items():
            if isinstance(value, int | float) and key != "epoch" and value is not None:
                group = "loss" if "loss" in key else "gate" if "alpha" in key else "metrics"
                self.writer.add_scalar(f"{group}/{key}", value, step)
        self.writer.flush()
        from magneto.curves import plot_curves

        plot_curves(self.history, self.out / "curves.png", title=f"{self.stage}: {self.out.name}")

    def fit(self) -> FitResult:
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out / "config.yaml")
            if self.start_epoch:  # resumed: the checkpoint's history is the truth
                lines = "".join(json.dumps(r) + "\n" for r in self.history)
                tmp = self.out / "metrics.jsonl.tmp"
                tmp.write_text(lines, encoding="utf-8")
                tmp.replace(self.out / "metrics.jsonl")
        paths = {k: self.out / v for k, v in self.names.items()}
        for epoch in range(self.start_epoch, self.config.epochs):
            started = time.perf_counter()
            self._set_epoch(epoch)
            train_stats, skipped = self._train_epoch(epoch)
            val_stats, scored = self._validate()
            threshold, metrics = self._score(scored)
            val_loss = val_stats["loss"]
            if self.scheduler is not None:
                self.scheduler.step(val_loss)
            skipped_ids = sorted(
                {i for part in all_gather_objects(skipped, self.dist) for i, _ in part}
            )
            record: dict[str, Any] = {
                "epoch": epoch,
                **{f"train_{k}": v for k, v in train_stats.items()},
                **{f"val_{k}": v for k, v in val_stats.items()},
                **{f"val_{k}": v for k, v in metrics.items()},
                "threshold": threshold,
                "lr": self.optimizer.param_groups[0]["lr"],
                "skipped_items": len(skipped_ids),
                "seconds": time.perf_counter() - started,
            }
            self.history.append(record)
            improved_f1 = metrics["f1"] > self.best_f1
            improved_loss = val_loss < self.best_loss
            self.best_f1 = max(self.best_f1, metrics["f1"])
            self.best_loss = min(self.best_loss, val_loss)
            if self.dist.is_main:
                if skipped_ids:
                    log.warning(
                        "epoch %d: %d items skipped for unusable images: %s",
                        epoch + 1,
                        len(skipped_ids),
                        ", ".join(skipped_ids[:10]),
                    )
                if improved_f1 and "best_f1" in paths:
                    save_checkpoint(
                        self._checkpoint(record, threshold, resumable=False), paths["best_f1"]
                    )
                if improved_loss and "best_loss" in paths:
                    save_checkpoint(
                        self._checkpoint(record, threshold, resumable=False), paths["best_loss"]
                    )
                save_checkpoint(
                    self._checkpoint(record, threshold, resumable=True), paths["latest"]
                )
                self._log(record)
                log.info(
                    "%s epoch %d/%d: train loss %.4f, val loss %.4f, val F1 %.4f (P %.4f R %.4f) "
                    "at threshold %.2f%s (%.1fs)",
                    self.stage,
                    epoch + 1,
                    self.config.epochs,
                    train_stats["loss"],
                    val_loss,
                    metrics["f1"],
                    metrics["precision"],
                    metrics["recall"],
                    threshold,
                    f", alpha {val_stats['alpha']:.3f}" if "alpha" in val_stats else "",
                    record["seconds"],
                )
        checksums = all_gather_objects(parameter_checksum(self.model), self.dist)
        if self.dist.is_main:
            if self.writer is not None:
                self.writer.close()
            final = {
                "epochs": len(self.history),
                "best_f1": self.best_f1,
                "best_loss": self.best_loss,
                "world_size": self.dist.world_size,
                "replica_checksums": checksums,
                "replicas_identical": len(set(checksums)) == 1,
            }
            (self.out / "final.json").write_text(json.dumps(final, indent=2) + "\n")
        return FitResult(self.history, self.best_f1, self.best_loss, paths, checksums)
